package demo

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// timeline prints the run's events as a person reads them: the time since
// the start, a kind, a sentence. Events are queued without blocking (the
// NIC's and the host's goroutines report them) and printed by one
// goroutine; a full queue drops and counts.
type timeline struct {
	w     io.Writer
	quiet bool
	now   func() time.Duration
	start time.Duration

	mu      sync.Mutex // guards closed and sends on q
	closed  bool
	q       chan event
	dropped atomic.Uint64
	wg      sync.WaitGroup
}

type event struct {
	at   time.Duration
	kind string
	text string
}

const timelineQueue = 4096

func newTimeline(w io.Writer, quiet bool, now func() time.Duration) *timeline {
	t := &timeline{w: w, quiet: quiet, now: now, start: now(), q: make(chan event, timelineQueue)}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		t.print()
	}()
	return t
}

// reorderWindow is how long an event waits for earlier ones reported
// late: a NIC wake is stamped with the device's time but reaches the
// timeline after the host has already reacted to it; the NIC's keep-alive
// work is stamped with its frames' capture times, read up to two slot
// polls (2 × pollInterval) later.
const reorderWindow = 500 * time.Millisecond

// print writes the events in time order, each once it is older than
// reorderWindow, and everything left when the queue closes. An event
// reported later still (older than one already printed) is printed at
// the last printed time, its own time in its text, so the timeline's
// times never go back.
func (t *timeline) print() {
	tick := time.NewTicker(reorderWindow / 4)
	defer tick.Stop()
	var pend []event
	last := time.Duration(math.MinInt64)
	flush := func(all bool) {
		slices.SortStableFunc(pend, func(a, b event) int { return cmp.Compare(a.at, b.at) })
		cut := t.since() - reorderWindow
		n := 0
		for _, e := range pend {
			if !all && e.at > cut {
				break
			}
			if e.at < last {
				e.text += " (at " + strings.TrimSpace(formatOffset(e.at)) + ", reported late)"
				e.at = last
			}
			last = e.at
			if !t.quiet {
				fmt.Fprintf(t.w, "%s  %-8s %s\n", formatOffset(e.at), e.kind, e.text)
			}
			n++
		}
		pend = append(pend[:0], pend[n:]...)
	}
	for {
		select {
		case e, ok := <-t.q:
			if !ok {
				flush(true)
				return
			}
			pend = append(pend, e)
		case <-tick.C:
			flush(false)
		}
	}
}

// since returns the time elapsed since the start of the run.
func (t *timeline) since() time.Duration { return t.now() - t.start }

// add queues an event now.
func (t *timeline) add(kind, format string, args ...any) {
	t.addAt(t.since(), kind, fmt.Sprintf(format, args...))
}

func (t *timeline) addAt(at time.Duration, kind, text string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	select {
	case t.q <- event{at: at, kind: kind, text: text}:
	default:
		t.dropped.Add(1)
	}
}

// close prints what is queued and stops; it is idempotent.
func (t *timeline) close() {
	t.mu.Lock()
	if !t.closed {
		t.closed = true
		close(t.q)
	}
	t.mu.Unlock()
	t.wg.Wait()
}

// formatOffset writes d as "+12.345s", right-aligned.
func formatOffset(d time.Duration) string {
	return fmt.Sprintf("%+9.3fs", d.Seconds())
}

// formatLatency writes a latency with a unit a person reads at a glance.
func formatLatency(d time.Duration) string {
	switch {
	case d < 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%d µs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
}
