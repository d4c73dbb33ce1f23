// Package host models the sleeping host: its power state machine, the
// channel API modelled on Windows ControlChannelTrigger, background tasks,
// transports and the TCP_REPAIR snapshot and hand-back of its connections.
package host
