// Package offload is the firmware core of a hardware keep-alive slot.
//
// Given a TCP connection's snapshot and a keep-alive spec it builds the
// keep-alive frames, classifies the peer's replies (absorb, answer, drop or
// wake), keeps exact books of the stream bytes it sent and absorbed, and
// decides when the peer is dead. It opens no sockets and reads no clock: it
// is fed frames and a Clock, and it returns frames to send and events.
//
// # What it owns
//
//   - Snapshot: the connection state the host read when it quiesced the
//     socket (MACs, VLAN, addresses, SND.NXT, RCV.NXT, windows and scales,
//     RFC 7323 timestamps with the host's clock rate, TTL, TOS, MSS).
//   - Spec: what a slot sends and expects — the RFC 1122 TCP probe (zero
//     or one garbage byte), a payload keep-alive with an expected reply
//     under a mask (MQTT PINGREQ/PINGRESP), or an RFC 6455 client
//     keep-alive (masked Ping expecting its Pong, unsolicited masked Pong,
//     or responder: the server's Pings answered) — and when (Interval,
//     FirstDue, RetryInterval, RetryCount, Tolerance). ParseSpec reads its
//     JSON form.
//   - Engine: the slots. Arm, Disarm (returns the Report with the books),
//     Receive (one frame the matcher attributed to a slot → Verdict), Fire
//     (the timers due now → keep-alives, retries, deaths), NextDeadline,
//     Stats. Output receives the frames to send and the wake events.
//   - Frame templates: per slot one header template (Ethernet [+802.1Q] +
//     IPv4/IPv6 + TCP [+ NOP NOP TS]) with valid checksums, copied and
//     patched per send (seq, ack, TSval/TSecr, IP ID, lengths, payload),
//     checksums updated incrementally (RFC 1624).
//   - The Scheduler (sched.go) orders the slots' timers and aligns sends
//     that fall within a slot's Tolerance into one batch (radio wake-up).
//
// # Slot state machine
//
//	        Arm
//	         │
//	         ▼
//	       armed ◄──────────────────────┐
//	         │ due: keep-alive          │ reply
//	         ▼                          │
//	   waiting-reply ───────────────────┤
//	         │ RetryInterval: retry     │
//	         ▼                          │
//	      retrying ─────────────────────┘
//	       │    ▲
//	       │    └── RetryInterval: retry (up to RetryCount)
//	       │ RetryInterval after the last retry
//	       ▼
//	      dead       wake: keep-alive-timeout
//
//	armed, waiting-reply, retrying ──► woken
//	       wake: data, FIN, RST (at RCV.NXT), books-full, buffer-full
//
// The first keep-alive is due FirstDue after Arm (Interval when FirstDue
// is 0); each later one an Interval after the first keep-alive of the
// cycle before (a cycle's retries do not move it). Disarm's Report says
// when that last cycle started (LastKeepAlive), so a host that arms the
// slot again at its next standby passes the time left as FirstDue and
// the connection's schedule runs on across the host's wakes.
//
// Disarm frees the slot from any state. Dead and woken are final: the slot
// keeps its books until Disarm, and Receive returns Wake for every later
// frame so the NIC buffers it for the host. Every transition is counted
// (Counters.Transitions per slot, Stats.Transitions[from][to] per engine).
// Each slot also keeps a Status as Infineon firmware reports it (normal,
// no response, bad ACK, unexpected flags, bad sequence, data waiting).
//
// # Stream consistency
//
// Every byte the engine puts on the stream advances SND.NXT and is recorded
// in Books.Sent; every byte it absorbs advances RCV.NXT and is recorded in
// Books.Absorbed; retransmissions re-send recorded bytes. So on wake the
// host takes the stream back byte-exact: its snapshot plus the books give
// the report's SND.NXT, SND.UNA and RCV.NXT. Sequence numbers and
// timestamps compare serially (RFC 1982, RFC 7323) across the 2^32 wrap.
//
// # Knobs (Config; zero means the default)
//
//	Clock              time source (engine-relative, CLOCK_BOOTTIME semantics)
//	Rand               masking keys and IP IDs (default ChaCha8 seeded by crypto/rand)
//	MaxSlots           4096 armed slots
//	BookBytes          4096 bytes per direction per data-bearing slot
//	BookEntries        256 entries per data-bearing slot
//	WSBuffer           127 bytes of partial WebSocket control frame
//	ACKInterval        500 ms between duplicate ACKs, and challenge ACKs, of a slot
//	ChallengeACKLimit  1000 challenge ACKs per second in all (RFC 5961)
//	Firmware           a shipping firmware's behaviours instead of the engine's own
//	                   (package profile sets them): Replay (the armed frame byte for
//	                   byte each period; probes only, else ErrReplayAdvances),
//	                   NoTimestamps (no TCP option in sent segments), DropOnly (only
//	                   the exact reply is consumed, everything else wakes with
//	                   ReasonPassed/Data/FIN/RST, nothing answered), NoLiveness (no
//	                   retries, never dead), ACKFlagStatus (StatusNoACKFlag),
//	                   EndOnData (payload and WebSocket replies wake)
//
// Spec limits: Interval 1 s – 24 h (seconds so tests run quickly; real
// deployments use minutes), FirstDue 0 – Interval (0 means Interval),
// RetryInterval 100 ms – Interval, RetryCount
// 0–16, Tolerance ≤ Interval/2, payloads ≤ 512 B, WebSocket payloads
// ≤ 125 B (control frames), and every keep-alive ≤ the connection's MSS.
//
// # Cost
//
// Building a keep-alive and classifying a reply allocate nothing (proven
// by AllocsPerRun tests). A TCP-probe slot holds no books or buffers: its
// state is one fixed-size record (template included) in a chunked table,
// an index entry and a scheduler entry, under 512 B per slot at 10^6 slots
// (BenchmarkArm1M). The Engine is not safe for concurrent use: the NIC's
// datapath goroutine owns it.
package offload
