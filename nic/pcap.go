package nic

import (
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// pcapRecord is one frame waiting for the pcap writer.
type pcapRecord struct {
	ts   time.Time
	orig int
	buf  []byte
}

// pcapSink writes frames to a nanosecond pcap (LinkTypeEthernet) from its
// own goroutine. The hot path copies a frame into a free pre-allocated
// record and hands its index over a buffered channel; when every record is
// in flight the frame is dropped from the capture and counted
// (pcap_dropped), never blocking forwarding. Write errors are counted
// (pcap_errors) and logged once.
type pcapSink struct {
	w       *pcapgo.Writer
	snap    int
	recs    []pcapRecord
	free    chan int
	full    chan int
	cnt     *counters
	written counterID
	log     *slog.Logger
	name    string

	closeOnce sync.Once
	done      chan struct{}
	failed    bool // touched only by the writer goroutine
}

func newPcapSink(w io.Writer, name string, snap, records int, cnt *counters, written counterID, log *slog.Logger) *pcapSink {
	s := &pcapSink{
		w:       pcapgo.NewWriterNanos(w),
		snap:    snap,
		recs:    make([]pcapRecord, records),
		free:    make(chan int, records),
		full:    make(chan int, records),
		cnt:     cnt,
		written: written,
		log:     log,
		name:    name,
		done:    make(chan struct{}),
	}
	for i := range records {
		s.free <- i
	}
	if err := s.w.WriteFileHeader(uint32(snap), layers.LinkTypeEthernet); err != nil {
		s.fail(err)
	}
	go s.run()
	return s
}

// capture queues frame (truncated to the snap length) for writing.
func (s *pcapSink) capture(frame []byte) {
	if s == nil {
		return
	}
	var i int
	select {
	case i = <-s.free:
	default:
		s.cnt.inc(cPcapDropped)
		return
	}
	r := &s.recs[i]
	n := min(len(frame), s.snap)
	if cap(r.buf) < n {
		r.buf = make([]byte, 0, max(n, 2048))
	}
	r.buf = append(r.buf[:0], frame[:n]...)
	r.orig = len(frame)
	r.ts = time.Now()
	s.full <- i
}

func (s *pcapSink) run() {
	defer close(s.done)
	for i := range s.full {
		r := &s.recs[i]
		ci := gopacket.CaptureInfo{Timestamp: r.ts, CaptureLength: len(r.buf), Length: r.orig}
		if err := s.w.WritePacket(ci, r.buf); err != nil {
			s.fail(err)
		} else {
			s.cnt.inc(s.written)
		}
		s.free <- i
	}
}

func (s *pcapSink) fail(err error) {
	s.cnt.inc(cPcapErrors)
	if !s.failed {
		s.failed = true
		s.log.Warn("pcap write failed; capture continues, counting errors", "pcap", s.name, "err", err)
	}
}

// close flushes the queued records and stops the writer. Idempotent; no
// capture may run concurrently with or after close.
func (s *pcapSink) close() {
	if s == nil {
		return
	}
	s.closeOnce.Do(func() { close(s.full) })
	<-s.done
}
