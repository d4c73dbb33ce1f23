package offload

// RFC 6455 §5.2 base framing, as far as keep-alives need it:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-------+-+-------------+-------------------------------+
//	|F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//	|I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//	|N|V|V|V|       |S|             |   (if payload len==126/127)   |
//	| |1|2|3|       |K|             |                               |
//	+-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//	|     Extended payload length continued, if payload len == 127  |
//	+ - - - - - - - - - - - - - - - +-------------------------------+
//	|                               |Masking-key, if MASK set to 1  |
//	+-------------------------------+-------------------------------+
//	| Masking-key (continued)       |          Payload Data         |
//	+-------------------------------- - - - - - - - - - - - - - - - +
//
// Control frames (opcode ≥ 8) are never fragmented and carry at most 125
// bytes, so their length always fits the 7-bit field. Frames from the
// client are masked with a fresh random key; frames from the server are
// not.
const (
	wsFIN     = 0x80
	wsRSV     = 0x70
	wsOpMask  = 0x0f
	wsMaskBit = 0x80
	wsLenMask = 0x7f

	wsOpClose = 0x8
	wsOpPing  = 0x9
	wsOpPong  = 0xa
)

// wsClientHeaderLen is the header length of a masked client control frame
// of at most 125 payload bytes: 2 bytes and the 4-byte masking key.
func wsClientHeaderLen(int) int { return 2 + 4 }

// putWSClientFrame writes a masked control frame with opcode op, masking
// key key and payload p into b (len(b) ≥ 6+len(p)).
func putWSClientFrame(b []byte, op byte, key [4]byte, p []byte) {
	b[0] = wsFIN | op
	b[1] = wsMaskBit | byte(len(p))
	copy(b[2:6], key[:])
	d := b[6 : 6+len(p)]
	for i, c := range p {
		d[i] = c ^ key[i&3]
	}
}

// wsScan is the outcome of scanning server bytes for WebSocket frames.
type wsScan uint8

const (
	// wsOK: complete Ping/Pong frames, possibly followed by the prefix of
	// a control frame (partial).
	wsOK wsScan = iota
	// wsWake: a data, Close, reserved or malformed frame: the host's.
	wsWake
)

// scanWS checks b (server to client) and returns wsOK when it holds only
// complete Ping and Pong frames and at most a trailing prefix of a valid
// control frame, whose start it returns as tail.
func scanWS(b []byte) (r wsScan, tail int) {
	pos := 0
	for pos < len(b) {
		b0 := b[pos]
		op := b0 & wsOpMask
		if op != wsOpPing && op != wsOpPong {
			// Data, continuation, Close, reserved: the host's. Close
			// needs the host's answer too.
			return wsWake, 0
		}
		if b0&wsFIN == 0 || b0&wsRSV != 0 {
			return wsWake, 0 // control frames are never fragmented; no extension defines RSV for them
		}
		if len(b)-pos < 2 {
			return wsOK, pos
		}
		b1 := b[pos+1]
		if b1&wsMaskBit != 0 || int(b1&wsLenMask) > MaxControlPayload {
			return wsWake, 0 // a masked server frame or an oversized control frame: protocol error
		}
		end := pos + 2 + int(b1&wsLenMask)
		if end > len(b) {
			return wsOK, pos
		}
		pos = end
	}
	return wsOK, pos
}
