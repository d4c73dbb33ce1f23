// Package pushserver is the reference push server of the lab: the far end
// of the host's control channels. It speaks two transports:
//
//   - a plain TCP stream of lines: the client opens with "hello <channel>\n";
//     the server pushes "push <id> <payload>\n"; the client acknowledges
//     with "ack <id>\n"; any other line is recorded as a client line (the
//     apps' keep-alives, for example "ka\n");
//   - WebSocket (RFC 6455, plain ws:// so the NIC can see the frames):
//     the client's first text message is "hello <channel>"; pushes are text
//     messages "push <id> <payload>"; acknowledgments "ack <id>"; the
//     server sends Pings on a schedule when Config.PingInterval is set,
//     and on request (Server.Ping), and records the Pongs.
//
// Message ids count from 1 per server. Pushes go out on a schedule
// (Config.PushInterval) or on request: Server.Push from Go, or
// POST /push?channel=<id> with the payload as body on the HTTP API
// (Server.HTTPAddr), which answers {"id":N}.
//
// For byte-exact checks the server records, per channel, every stream byte
// it wrote and read on the connection, handshake included (Record). It can
// reset a channel's connection (Server.Reset: SO_LINGER 0 then close, so
// the kernel sends RST instead of FIN).
//
// # Lifecycle
//
//	New ──> serving ──Close──> closed
//
// New listens (TCP stream, WebSocket, HTTP API); Close stops the
// listeners, closes every connection and waits for every goroutine the
// server started. Close is idempotent. A channel whose connection ends
// stays in the books (Record, Acked) with Connected false; a new
// connection with the same hello replaces it.
package pushserver
