package offload

// Serial-number arithmetic (RFC 1982) on 32-bit sequence numbers and
// timestamps (RFC 7323 §5.2 compares TSvals the same way): a is before b
// when b−a, as a signed 32-bit number, is positive. Comparisons are correct
// across the 2^32 wrap for values less than 2^31 apart.

func seqLT(a, b uint32) bool  { return int32(a-b) < 0 }
func seqLEQ(a, b uint32) bool { return int32(a-b) <= 0 }
func seqGT(a, b uint32) bool  { return int32(a-b) > 0 }

// seqInWindow reports whether lo ≤ x < lo+wnd (serially).
func seqInWindow(x, lo, wnd uint32) bool { return x-lo < wnd }

// tsLT reports whether timestamp a is older than b (RFC 7323 PAWS).
func tsLT(a, b uint32) bool { return int32(a-b) < 0 }
