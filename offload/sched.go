package offload

import (
	"math"
	"time"
)

// Scheduler orders the keep-alive sends of up to millions of armed slots on
// one core and aligns them into batches (radio wake-ups).
//
// # Entries
//
// An entry is a slot id (a dense small integer, used as an index), a due
// time and a tolerance, on the engine's monotonic timeline (see Clock). The
// entry may be sent at any time in [due−tolerance, due]; it must not be sent
// later than due if a wake-up can help it. Schedule replaces any existing
// entry of the same id. Cancel removes it.
//
// # Batching rule
//
// Fire(now, fn) is a radio wake-up at now. If no entry has due ≤ now, it
// does nothing and returns 0: entries are never sent early on their own.
// Otherwise it is a batch: fn is called for every entry with due ≤ now and
// then for every entry whose window has opened (due − tolerance ≤ now), so
// slots due within their tolerance of this wake-up go out with it instead of
// waking the radio again. Entries are handed to fn in this order: first the
// due entries by (due, id), then the early-aligned ones by (due − tolerance,
// id). With tolerance 0 every distinct due time is its own batch (when the
// driver calls Fire at Next()); with a window, batches merge. Stats counts
// batches, fired entries and early-aligned entries, so the two can be
// compared.
//
// The whole batch is chosen and removed before fn is first called. fn may
// call Schedule, Cancel, Next and Len: an entry scheduled during Fire is
// never fired by that same call (even when already due; the next Fire takes
// it), and Schedule or Cancel of an id of the current batch that fn has not
// been called for yet withdraws it from the batch. Fire must not be called
// from fn (it panics). If fn panics, the entries of the batch it has not been
// called for are dropped, as if cancelled.
//
// # Algorithm and cost
//
// Two indexed 4-ary min-heaps hold every entry: one keyed on due, one keyed
// on due − tolerance (saturating, so huge durations never wrap). The first
// answers Next and "is anything due"; the second yields the early window in
// order without a scan. Since due − tolerance ≤ due, every due entry is also
// at the front of the second heap, and each heap gives its prefix in
// O(k log n) for a batch of k. Per-id position arrays make Cancel and
// re-Schedule O(log n) updates in place. Schedule, Cancel: O(log n);
// Next, Len: O(1); Fire: O(1) when nothing is due, O(k log n) for a batch
// of k. A 4-ary heap is half as deep as a binary one, and its sibling
// groups are padded to start on a cache line so a sift-down step touches
// one line: at 10^6 entries the cost is cache misses, not comparisons.
//
// A hierarchical timing wheel would make Schedule O(1), but it quantizes due
// times to its tick, so two slots due 100 µs apart would share a batch even
// with tolerance 0, and it cannot answer "which entries' windows are open"
// without scanning slots ahead of now; with per-entry tolerances the heap on
// due − tolerance answers it exactly. At 10^6 entries a heap operation
// costs a few hundred nanoseconds, far below a keep-alive interval.
//
// # Memory
//
// Per id ever scheduled: 16 B in each heap (key and id), 4 B of position in
// each heap and 4 B of batch scratch, 44 B per entry in all (plus slice
// slack and 96 B of heap padding). Memory grows with the largest id, so ids must be dense.
//
// Fire, Cancel, Next, Len and Schedule of an id below the capacity already
// reached allocate nothing. A Scheduler is not safe for concurrent use.
type Scheduler struct {
	due   quadHeap // keyed on due
	early quadHeap // keyed on due − tolerance

	// batch is the scratch list of the ids chosen by the running Fire; its
	// capacity always covers every id so Fire never allocates. While an id
	// waits in batch its early.pos is schedPending.
	batch  []uint32
	cursor int // index in batch of the next id handed to fn
	firing bool

	stats SchedStats
}

// SchedStats counts what a Scheduler did.
type SchedStats struct {
	// Batches counts the calls of Fire that fired at least one entry: the
	// radio wake-ups.
	Batches uint64
	// Fired counts the entries handed to fn.
	Fired uint64
	// Early counts the fired entries that were not yet due: those aligned
	// into a batch by their tolerance window.
	Early uint64
	// MaxLateness is the largest now − due seen among fired due entries:
	// how late the driver called Fire.
	MaxLateness time.Duration
}

// schedPending in early.pos marks an id chosen by the running Fire that fn
// has not been called for yet. Heap slots never reach it.
const schedPending = math.MaxUint32

// NewScheduler returns an empty Scheduler sized for ids below capacity (a
// hint: larger ids grow it).
func NewScheduler(capacity int) *Scheduler {
	s := &Scheduler{}
	if capacity > 0 {
		s.grow(capacity)
	}
	return s
}

// grow makes room for ids below n.
func (s *Scheduler) grow(n int) {
	if n <= len(s.due.pos) {
		return
	}
	if m := 2 * len(s.due.pos); m > n {
		n = m
	}
	s.due.pos = schedGrowPos(s.due.pos, n)
	s.early.pos = schedGrowPos(s.early.pos, n)
	s.due.items = schedGrowItems(s.due.items, n)
	s.early.items = schedGrowItems(s.early.items, n)
	if cap(s.batch) < n {
		b := make([]uint32, len(s.batch), n)
		copy(b, s.batch)
		s.batch = b
	}
}

func schedGrowPos(p []uint32, n int) []uint32 {
	q := make([]uint32, n)
	copy(q, p)
	return q
}

// Schedule arms id to be due at due, sendable from due − tolerance on. It
// replaces an existing entry of id (and withdraws id from the batch of a
// running Fire). A negative tolerance counts as 0.
func (s *Scheduler) Schedule(id uint32, due, tolerance time.Duration) {
	if int(id) >= len(s.due.pos) {
		s.grow(int(id) + 1)
	}
	early := schedWindowStart(due, tolerance)
	if s.due.pos[id] != 0 {
		s.due.update(id, int64(due))
		s.early.update(id, int64(early))
		return
	}
	// Absent, or pending in the running batch: pushing overwrites the
	// pending mark, which withdraws it.
	s.due.push(id, int64(due))
	s.early.push(id, int64(early))
}

// schedWindowStart returns due − tolerance, saturating at the minimum duration.
func schedWindowStart(due, tolerance time.Duration) time.Duration {
	if tolerance <= 0 {
		return due
	}
	if due < math.MinInt64+tolerance {
		return math.MinInt64
	}
	return due - tolerance
}

// Cancel removes the entry of id, if any, and withdraws id from the batch of
// a running Fire.
func (s *Scheduler) Cancel(id uint32) {
	if int(id) >= len(s.due.pos) {
		return
	}
	if s.due.pos[id] != 0 {
		s.due.remove(id)
		s.early.remove(id)
		return
	}
	if s.early.pos[id] == schedPending {
		s.early.pos[id] = 0
	}
}

// Next returns the earliest due time among the entries, and false when there
// are none. The driver sleeps until then and calls Fire.
func (s *Scheduler) Next() (time.Duration, bool) {
	if s.due.len() == 0 {
		return 0, false
	}
	return time.Duration(s.due.min().key), true
}

// Due returns the due time of id's entry, and false when id has none.
func (s *Scheduler) Due(id uint32) (time.Duration, bool) {
	if int(id) >= len(s.due.pos) || s.due.pos[id] == 0 {
		return 0, false
	}
	return time.Duration(s.due.key(id)), true
}

// Len returns the number of entries (those of a running Fire's batch are
// already removed).
func (s *Scheduler) Len() int { return s.due.len() }

// Stats returns the counters.
func (s *Scheduler) Stats() SchedStats { return s.stats }

// Fire is a wake-up at now: when at least one entry is due (due ≤ now) it
// removes and hands to fn every due entry and every entry whose tolerance
// window has opened (due − tolerance ≤ now), per the batching rule in the
// Scheduler doc, and counts a batch. It returns the number of entries handed
// to fn. It allocates nothing.
func (s *Scheduler) Fire(now time.Duration, fn func(id uint32)) int {
	if s.firing {
		panic("offload: Scheduler.Fire called from its own callback")
	}
	if s.due.len() == 0 || s.due.min().key > int64(now) {
		return 0
	}
	s.batch = s.batch[:0]
	for s.due.len() > 0 && s.due.min().key <= int64(now) {
		it := s.due.popMin()
		s.early.remove(it.id)
		s.early.pos[it.id] = schedPending
		s.batch = append(s.batch, it.id)
		late := now - time.Duration(it.key)
		if late < 0 { // overflowed: due ≤ now, so the true value is huge
			late = math.MaxInt64
		}
		if late > s.stats.MaxLateness {
			s.stats.MaxLateness = late
		}
	}
	nDue := len(s.batch)
	for s.early.len() > 0 && s.early.min().key <= int64(now) {
		it := s.early.popMin()
		s.due.remove(it.id)
		s.early.pos[it.id] = schedPending
		s.batch = append(s.batch, it.id)
	}

	s.firing = true
	defer s.endFire()
	fired := 0
	for s.cursor = 0; s.cursor < len(s.batch); s.cursor++ {
		id := s.batch[s.cursor]
		if s.early.pos[id] != schedPending {
			continue // withdrawn by an earlier fn of this batch
		}
		s.early.pos[id] = 0
		fired++
		s.stats.Fired++
		if s.cursor >= nDue {
			s.stats.Early++
		}
		fn(id)
	}
	s.stats.Batches++ // the first entry always fires: nothing precedes it
	return fired
}

// endFire ends a Fire, dropping the rest of the batch if fn panicked.
func (s *Scheduler) endFire() {
	for _, id := range s.batch[min(s.cursor, len(s.batch)):] {
		if s.early.pos[id] == schedPending {
			s.early.pos[id] = 0
		}
	}
	s.batch = s.batch[:0]
	s.cursor = 0
	s.firing = false
}

// schedItem is a heap element: 16 bytes, so four siblings fill one 64-byte
// cache line.
type schedItem struct {
	key int64
	id  uint32
}

func (a schedItem) less(b schedItem) bool {
	return a.key < b.key || (a.key == b.key && a.id < b.id)
}

// heapRoot is the slot of the root in quadHeap.items. The three slots before
// it are padding that aligns every group of four siblings (slots 4k … 4k+3)
// to a 64-byte cache line, so a sift-down step touches one line, not two.
const heapRoot = 3

// quadHeap is an indexed 4-ary min-heap of ids ordered by (key, id). The
// node in slot p ≥ heapRoot has its children in slots 4p−8 … 4p−5 and its
// parent in slot p/4+2. pos[id] is id's slot, or 0 when id is absent (other
// values below heapRoot or above any slot belong to the Scheduler).
type quadHeap struct {
	items []schedItem // items[:heapRoot] is padding
	pos   []uint32
}

// len returns the number of entries.
func (h *quadHeap) len() int { return max(len(h.items)-heapRoot, 0) }

// min returns the root; the heap must not be empty.
func (h *quadHeap) min() schedItem { return h.items[heapRoot] }

// key returns the key of id, which must be present.
func (h *quadHeap) key(id uint32) int64 { return h.items[h.pos[id]].key }

// schedGrowItems returns items with room for n entries after the padding.
func schedGrowItems(items []schedItem, n int) []schedItem {
	if cap(items) >= n+heapRoot {
		return items
	}
	// Large allocations start on a page, which keeps the sibling groups
	// cache-line aligned.
	q := make([]schedItem, max(len(items), heapRoot), n+heapRoot)
	copy(q, items)
	return q
}

// push adds id, which must be absent; the Scheduler has grown items to hold
// every id, so it never reallocates.
func (h *quadHeap) push(id uint32, key int64) {
	if len(h.items) < heapRoot {
		h.items = schedGrowItems(h.items, 1)
	}
	h.items = append(h.items, schedItem{key: key, id: id})
	h.up(len(h.items) - 1)
}

func (h *quadHeap) popMin() schedItem {
	it := h.items[heapRoot]
	h.removeAt(heapRoot)
	return it
}

// remove removes id, which must be present.
func (h *quadHeap) remove(id uint32) { h.removeAt(int(h.pos[id])) }

func (h *quadHeap) removeAt(p int) {
	h.pos[h.items[p].id] = 0
	last := len(h.items) - 1
	if p == last {
		h.items = h.items[:last]
		return
	}
	h.items[p] = h.items[last]
	h.items = h.items[:last]
	h.fix(p)
}

// update changes the key of id, which must be present.
func (h *quadHeap) update(id uint32, key int64) {
	p := int(h.pos[id])
	h.items[p].key = key
	h.fix(p)
}

func (h *quadHeap) fix(p int) {
	if p > heapRoot && h.items[p].less(h.items[p/4+2]) {
		h.up(p)
	} else {
		h.down(p)
	}
}

func (h *quadHeap) up(p int) {
	items := h.items
	it := items[p]
	for p > heapRoot {
		q := p/4 + 2
		if !it.less(items[q]) {
			break
		}
		items[p] = items[q]
		h.pos[items[p].id] = uint32(p)
		p = q
	}
	items[p] = it
	h.pos[it.id] = uint32(p)
}

func (h *quadHeap) down(p int) {
	items := h.items
	n := len(items)
	it := items[p]
	for {
		c := 4*p - 8
		if c >= n {
			break
		}
		m := c
		end := min(c+4, n)
		for j := c + 1; j < end; j++ {
			if items[j].less(items[m]) {
				m = j
			}
		}
		if !items[m].less(it) {
			break
		}
		items[p] = items[m]
		h.pos[items[p].id] = uint32(p)
		p = m
	}
	items[p] = it
	h.pos[it.id] = uint32(p)
}
