// Package host models the sleeping host: its power state machine, the
// channel API modelled on Windows ControlChannelTrigger, background tasks,
// transports to any server (Dial: the line, raw, WebSocket and MQTT
// protocols over TCP or TLS), the software keep-alives of channels
// without a hardware slot, the reconnect schedule of channels that lost
// their transport, and the TCP_REPAIR snapshot and hand-back of the
// connections a NIC slot guards (repair.go).
//
// # Transports
//
//	Dial(ctx, &DialConfig{Endpoint, Protocol, KeepAlive, TLS, …})
//	  tcp://h:p        line (hello <id>; a push is a line) or raw (no
//	                   greeting; a push is one read's bytes)
//	  ws://, wss://    websocket (a push is a text or binary message)
//	  mqtt://, mqtts:// mqtt 3.1.1 or 5.0 (CONNECT, SUBSCRIBE; a push is a
//	                   PUBLISH: Message.Topic, Data, QoS; QoS 1 PUBACKed)
//
// Each transport says what a NIC slot must do for it
// (Transport.NICKeepAlive): TCP probes, the WebSocket keep-alive (ping,
// pong, responder), or a payload keep-alive (MQTT's PINGREQ c0 00 /
// PINGRESP d0 00 preset, or the app's request, reply and mask). A TLS
// channel's slot guards only the TCP connection (KeepAliveLevel "tcp"):
// the NIC cannot write inside TLS, so the host sends the app's keep-alive
// itself on its own wakes and any TLS record from the server wakes it. An
// MQTT channel's interval is capped at 0.75× the negotiated keep-alive.
// Keep-alive replies (PINGRESP, Pong, payload replies), the NIC's
// absorbed ones included, are consumed by the codec and counted
// (Transport.Stats, Channel.Stats), never pushed.
//
// # Reconnects
//
// A TransportDisconnected channel's reset task (ResetTransportDisconnected)
// makes one reconnect attempt. It runs at once when the host is awake;
// otherwise, and after every attempt that left the channel without a
// transport, the host schedules its own wake (WakeReconnect) with
// exponential backoff (Config.ReconnectMin doubling to ReconnectMax,
// ±ReconnectJitter). A new transport ends the schedule.
//
// # Power states
//
//	          Standby(ctx) and no task running
//	 awake ──────────────────────────────> entering-standby
//	   ^                                         │ channels quiesced,
//	   │ hand-back, NIC Resume,                  │ slots armed, NIC Sleep
//	   │ due keep-alives, pending tasks          v
//	resuming <──────────────────────────────── standby
//	   (ResumeLatency)   wake: NIC event (push, reset, keep-alive timeout),
//	                     software timer (keep-alive, push check, reconnect),
//	                     user, nic-lost (the NIC lost or back)
//
// Every transition is counted (Stats.Transitions), every wake by reason
// (Stats.Wakes), the time in each state (Stats.TimeIn), and an energy
// estimate is kept from Config.Power (mW awake, mW standby, mJ per
// resume), beside the same estimate for a host without hardware slots
// (every channel kept alive by coalesced software wakes, counted by a
// shadow slotmgr.Planner over the same timeline).
//
// After a background wake the host returns to standby by itself once no
// task runs, nothing is pending, and the hold has passed: WakeHold for the
// woken channel's message after a hardware wake, SoftwareWakeHold after a
// software wake. A user wake (Wake) keeps it awake until Standby.
//
// # Channels
//
//	NewChannel(id, interval, resource, app, priority)   slotmgr.Pool.Request
//	  UsingTransport(t)       posts the receive; the NIC starts tracking
//	  WaitForPushEnabled()    HardwareSlotAllocated, SoftwareSlotAllocated,
//	                          PolicyError, SystemError, TransportDisconnected,
//	                          ServiceUnavailable (slotmgr.Status)
//	  SetPushTask / SetKeepAliveTask / SetResetTask   (RegisterTask names)
//	  DecreaseNetworkKeepAliveInterval, FlushTransport, Send, Receive, Close
//
// A receive is always posted: the read completion queues the message, then
// fires the PushNotification trigger; the task pops the message with
// TaskInstance.Receive. Triggers fired while the host sleeps wait for the
// next wake (a software channel's push is delivered at the next software
// wake). A transport error marks the channel TransportDisconnected (its
// slot is freed; a freed hardware slot promotes a software channel) and
// fires the reset trigger with ResetTransportDisconnected; Host.Reset
// raises the system resets (FastUserSwitched, LowPowerExit,
// QuietHoursExit, ApplicationRestart). A new UsingTransport reconnects.
//
// # Standby and wake
//
// Entering standby, each hardware channel's socket must drain (IdleWait)
// and be idle; it is frozen (Freeze: SO_KEEPALIVE off, TCP_REPAIR, the
// snapshot read), its offload.Snapshot built from TCPState plus the NIC's
// learned MACs and TS.Recent, and a NIC slot armed with the keep-alive
// its transport asks for (see Transports). A channel that cannot be
// armed stays with the host's software keep-alives and says why
// (Channel.Note). Software channels are served by the slotmgr.Planner on
// the host's own coalesced wakes: a WebSocket gets a real Ping, MQTT a
// PINGREQ, a payload channel its request, a stream its transport
// keep-alive or its app's KeepAlive task. Each of them gets a NIC
// receive-coalescing filter (NIC.AddCoalescing): in D3 the NIC holds
// their frames without waking the host. Then the NIC sleeps; a segment
// the NIC forwarded to a socket between its freeze and the sleep (the NIC
// counts what it learns) makes that channel's slot stale, and it is taken
// back at once.
//
// A hardware channel keeps one keep-alive schedule whoever serves it. Its
// slot's first keep-alive is due when the host's plan has the channel's
// next one (offload.Spec.FirstDue: the time left, at least 100 ms, at most
// the interval); at the hand-back the plan goes on from the slot's last
// keep-alive (offload.Report.LastKeepAlive) or, when the slot sent none,
// from the time its first was due (served by the host at once if that has
// passed). So a channel whose interval is longer than the time between
// the host's wakes still gets a keep-alive every interval; its interval
// does not restart at each standby entry, which would let the NAT or
// firewall mapping the keep-alive holds open expire.
//
// Before the entry the host waits, bounded by IdleWait in real time, for
// every channel's socket to be quiet (nothing unsent, unacknowledged or
// unread): bytes in flight would be stranded by a sleeping host. The NIC
// may not have seen a connection as the kernel has it (tracked after its
// last segment); then the socket leaves repair mode once, whose window
// probe draws the peer's answer through the NIC, and is frozen again.
//
// On a NIC wake, or its own wake (then it calls NIC.Wake), the host
// resumes, disarms every slot, thaws each socket with the slot's books
// (Thaw(sent, absorbed): the bytes the NIC absorbed go to the receive
// queue, those it sent to the send queue), removes the coalescing
// filters, then tells the NIC to Resume so it delivers, in order, the
// frames it held (coalesced) and buffered since the wake: no frame
// reaches a frozen socket, the app reads exactly what the server sent,
// and the server got exactly what was sent on the connection. Server
// Pings the NIC already answered are not answered again by the WebSocket
// reader. A *nic.Device is a NIC as it is (Config.NIC = dev).
//
// # The NIC watch
//
// A NIC that is also a NICWatcher (nic.Remote: a NIC daemon behind its
// control socket, its slots held under a lease) raises a nic-lost wake
// (WakeNICLost) when its daemon dies, restarts or stops answering. The
// host takes every slot back, in any state: with the books when Disarm
// still answers, else thawed without them when the slot could have put no
// byte on the stream (TCP probes, or no keep-alive due yet:
// Stats.BlindThaws), else thawed and closed, so that the reset task
// reconnects (Stats.Unrecovered, Channel.Note; nicwatch.go says why TCP
// cannot repair such a stream). While the NIC is away the host sleeps on
// its own keep-alives (nothing armed, coalesced, put to sleep or woken on
// the NIC). When it is back (NICWatcher.Back) it disarms the lease's stale
// slots (the same instance) or forgets what the old instance held (another
// one), tracks every connection again and wakes (WakeNICLost) to arm at
// the next standby entry. A new host disarms what a predecessor left under
// a lease it took over. Every channel's socket has TCP_USER_TIMEOUT set to
// what a NIC slot waits for a silent peer (the interval plus
// HardwareRetryCount retries): a channel the host keeps alive itself finds
// a dead peer as soon, and reconnects.
//
// # Real processes (process.go)
//
// AddProcess gives the host a program held by procfreeze (started with
// procfreeze.Run or adopted with procfreeze.Adopt). Entering standby,
// before the channels are armed, the host freezes it and makes a channel
// per established TCP connection of it ("NAME/PID/FD"): idle ones ask for
// a hardware slot (the NIC's keep-alive chosen per remote endpoint,
// ProcessEndpoint: 1883 the MQTT preset, else TCP probes unless given),
// busy ones a software slot. Their transport only guards the socket
// (guardTransport): its Conn is the pidfd_getfd duplicate, the host posts
// no receive on it, and its software keep-alive is a thaw of the process
// for ProcessConfig.ThawWindow on the host's coalesced wake, so the app
// sends its own. A packet for one of its connections wakes the host: the
// socket is handed back byte-exact, the replies the NIC absorbed are read
// off through the duplicate unless ProcessEndpoint.KeepAbsorbed, the
// channels are closed (TCP_USER_TIMEOUT put back as the app had it), the
// process is thawed, and the host holds awake for the window. The time
// from the wake packet's arrival to the thaw is ProcessStats's
// LastWakeLatency. A software wake of other channels leaves it frozen
// (its sockets were handed back; they are armed again at the next entry).
//
//	standby entry: Freeze → Sockets(Idle) → channels → arm (as any channel)
//	wake: hand-back → skip absorbed → close channels → Thaw → hold ThawWindow
//
// # Knobs (Config)
//
//	Clock              host time and timers (SystemClock; FakeClock in tests)
//	NIC                the adapter (nil: host-only keep-alives)
//	Pool, Planner      slot policy; coalescing tolerance
//	ResumeLatency      modelled resume time
//	Power              energy model
//	PushCheckInterval  own wakes to collect software pushes (0: off)
//	WakeHold, SoftwareWakeHold, IdleWait
//	HardwareRetryInterval, HardwareRetryCount   NIC keep-alive retries
//	ReconnectMin, ReconnectMax, ReconnectJitter  the reconnect schedule
//
// The host owns its goroutines (state machine, one posted receive per
// transport, one per running task); Close stops them and is idempotent.
package host
