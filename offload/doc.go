// Package offload is the firmware core of a hardware keep-alive slot.
//
// Given a TCP connection's snapshot and a keep-alive spec it builds the
// keep-alive frames, classifies the peer's replies (absorb, answer, drop or
// wake), keeps exact books of the stream bytes it sent and absorbed, and
// decides when the peer is dead. It opens no sockets and reads no clock: it
// is fed frames and a Clock, and it returns frames to send and events.
package offload
