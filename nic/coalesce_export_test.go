package nic

// CoalescedValue reads the d3_rx_coalesced counter without allocating.
func CoalescedValue(d *Device) uint64 {
	if s := d.table.Load().coal; s != nil {
		return s.cnt.coalesced.Load()
	}
	return 0
}
