// Package fleet runs many emulated sleeping devices in one process
// against a real MQTT broker, or the reference push server's line stream
// (ProtocolLine: hello, "ka" keep-alives, acknowledged pushes posted to
// its HTTP API): `standbynic fleet`. It answers what a push
// service sees when a population of devices sleeps: host wakes per
// device-hour by reason, keep-alives on the wire, the connections the
// server still holds, and how late pushes land.
//
// # Model
//
// A device is a host power model (asleep, awake until a hold passes;
// wakes counted by reason; energy from mW awake, mW in standby and mJ
// per resume) holding Channels MQTT connections, each with its own
// keep-alive interval. Its first HardwareSlots channels have a NIC slot:
// while the host sleeps their keep-alive (PINGREQ) goes on the wire
// without a wake, and a push on them wakes the host (WakePush; delivered
// ResumeLatency later). The other channels are software: their
// keep-alive due while asleep wakes the host (WakeKeepAlive), and that
// wake serves every software channel of the device due within Tolerance
// of its interval (slotmgr.Planner's coalescing); a push on them is held
// (the NIC's receive-coalescing filter) until the next wake. Doze-like
// maintenance windows (WakeMaintenance) wake each device every
// MaintenanceEvery for MaintenanceFor.
//
// Every draw (slots, intervals, phases, push times and channels) comes
// from the device's own PCG stream seeded by (Seed, global index), so a
// device behaves the same in every shard layout and shard reports add up
// exactly (Merge). Config.Sim runs the same model on a virtual clock with
// no network: deterministic, hours of fleet time in a second.
//
// # What is real, what is modelled
//
// Against a broker each channel is a real TCP connection from the
// device's own source address (Config.Sources, e.g. 127.1.0.0/16 on lo),
// CONNECT (keep-alive ceil(interval/0.75) s) and SUBSCRIBE to its own
// topic; the PINGREQs really reach the broker, which drops a channel
// whose keep-alives stop. Pushes are published by the shard's own
// publisher connection (QoS 0) with their publish time in the payload;
// at the end a probe is published to every channel and the probes that
// come back through the broker are the connections it still holds.
//
// The NIC side is modelled, not emulated: a hardware slot's keep-alive
// is written on the connection's socket by this process (not built by the
// offload engine and sent on an AF_PACKET port from a frozen TCP_REPAIR
// socket, as `standbynic host`/`nic` do for one device), and a sleeping
// device's software-channel push is held in the model, not in a NIC
// filter. The server sees the same bytes at the same times; what fleet
// does not exercise is the hand-over of sockets between host and NIC.
//
// # Memory
//
// A device is a small struct (about 100 B) plus per channel a struct, the
// net.Conn and one reader goroutine (its stack dominates). Report.Memory
// measures heap and stacks in use after the channels connected, minus
// before, and the resident set likewise.
//
// # Lifecycle
//
//	New(cfg) ─> Run(ctx): connect (bounded by Timeout, ConnectWorkers at
//	a time) ─> Duration of events ─> final wake (held pushes delivered)
//	─> probe ─> every connection closed, every reader waited ─> Report
//
// Run owns its goroutines (connect workers, one reader per connection,
// the publisher's reader) and waits for all of them before it returns.
package fleet
