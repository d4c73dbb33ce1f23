// Package demo is the scenario engine of `standbynic demo`: it builds the
// lab (internal/netlab: namespaces srv, nic and host joined by veths),
// starts the reference push server in srv, the emulated NIC between the
// two veths in nic, and a host with six sample apps in host, puts the
// host to sleep and plays a scripted scenario against it, printing a
// timeline a person reads and a final summary table.
//
// # The apps
//
//	channel  transport  keep-alive  priority
//	voip     websocket  3 s         7
//	chat     websocket  4 s         6
//	mail     tcp        4 s         5   (reset once by the server)
//	news     tcp        5 s         4
//	social   websocket  8 s         3
//	weather  tcp        10 s        2
//
// Every app requests a hardware slot; with the default four slots the
// four highest priorities get them and social and weather fall back to
// software slots (the host wakes itself to keep them alive, and the NIC
// holds their frames without waking it). Keep-alive intervals are in
// seconds where Windows counts minutes.
//
// # The scenario
//
// Once the host sleeps, a quiet first third lets the keep-alives run:
// the NIC's for the hardware channels, the host's own coalesced wakes
// for the software ones. The server Pings every WebSocket channel
// (1 + duration/20 s times each, at seeded random times), pushes to every
// channel (1 + duration/30 s times each) from 35 % of the duration on,
// and resets mail's connection at 60 %, once the host is asleep (no push
// on mail within 3 s of it, less in short scenarios). The NIC sends the hardware
// channels' keep-alives, absorbs the replies and answers the Pings
// without waking the host; a push wakes it (reason, slot, saved packet);
// the reset wakes it, the app reconnects, and the freed hardware slot is
// offered to a software channel. At the end the user wakes the host and
// the demo waits (Options.Drain) for pushes still on their way.
//
// # Output
//
// The timeline (unless Options.Quiet), then Summary.Write: per channel
// the slot kind, pushes sent, delivered and acknowledged, delivery
// latency p50/max (push written by the server → the app's task running);
// host wakes by reason; the NIC's keep-alive work; energy against an
// all-software host; the pcap files (wire.pcap: every frame the NIC saw
// on the wire port, both ways; wake.pcap: the saved wake packets) in the
// out folder. Run returns an error wrapping ErrLost when a push was not
// delivered.
//
// # The timeline
//
// Each line is the time since the run started, a kind, a sentence; lines
// come in time order, each printed once it is half a second old, so that
// events reported late take their place. Events are stamped with the time
// they happened: a NIC wake with the device's time of the wake; the NIC's
// keep-alive work (a keep-alive sent or re-sent, a reply absorbed, a
// server Ping answered, a frame held for a software channel) with the
// capture time of its frame in wire.pcap: the slot counters, polled every
// 50 ms, say what happened, the capture (read as the device writes it)
// says when. An event whose frame the capture does not show is stamped
// when the counters showed it; one reported later than the half second
// is printed at the last printed time with its own time in its text.
//
// Slots are numbered one way: "slot N" is the NIC's slot ID (1 to the
// NIC's slot count), the number in its wake events, counters, logs and
// control API. The NIC gives a slot at every arming (the lowest free),
// so a channel may change number between sleeps: the "asleep" line lists
// the slots, and "back to standby" lists them again when they changed.
// The host's slot pool (slotmgr) numbers the hardware slots it reserves
// from 0; that index is not printed (its promotion and eviction reasons
// are rewritten without it).
//
// A frame held for a software channel that repeats bytes already
// captured is marked as the server's retransmission: nothing acknowledges
// a sleeping host's segments, so the server's retransmission timer runs.
//
// "wire" lines name the window probes the host's kernel sends as a
// socket leaves TCP_REPAIR (at a thaw, and when the host unfreezes a
// socket for the NIC to see its peer): a zero-length segment one byte
// before SND.UNA, which tshark labels TCP Keep-Alive and the server
// answers with a duplicate ACK.
//
// # Interruption
//
// When Run's context ends (the command's SIGINT or SIGTERM) the scenario
// stops where it is: no user wake, no drain; the summary of the run so
// far is printed (Summary.Interrupted; the pushes not delivered yet are
// pending, not lost), the host and NIC are closed (the host hands its
// slots back), the lab's namespaces removed, and Run returns an error
// wrapping ErrInterrupted; Launch returns ExitInterrupted (130, what a
// shell reports for Ctrl-C).
//
// # Errors
//
// Run's errors carry no prefix of their own; Launch writes them after
// "standbynic demo: ", the one layer that names the command.
//
// # Privileges
//
// Run needs CAP_SYS_ADMIN, CAP_NET_ADMIN and CAP_NET_RAW. Launch (what
// the command calls) runs Run as root; as a normal user it re-executes
// the program in a new user+mount+network namespace (uid/gid mapped to
// root, a private tmpfs on /run/netns so the lab can name its
// namespaces); when the kernel refuses unprivileged user namespaces it
// names the missing capabilities and exits 1.
//
// # Goroutines
//
// Run owns everything it starts: the timeline printer, the wake-event
// accountant, the slot poller and the host watcher, besides the lab's
// host, NIC and push server; all are stopped and waited for before Run
// returns, and the lab's namespaces are deleted. The capture reader runs
// on the device's own pcap goroutine, as the writer of wire.pcap.
package demo
