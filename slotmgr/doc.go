// Package slotmgr owns the fixed pool of hardware keep-alive slots and the
// unbounded software slots of the host: admission policy, placement with
// fallback, the ControlChannelTrigger status codes, priorities, eviction,
// promotion and the coalescing of software keep-alives into shared host
// wakes. It knows nothing of sockets or frames.
package slotmgr
