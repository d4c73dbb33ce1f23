package nic

import "sync"

// txQueue carries frames the offload engine produces (keep-alives,
// answers) to the wire from its own goroutine, so the engine's callbacks
// never block on the port: Send copies the frame into a free
// pre-allocated buffer and queues its index; when every buffer is in
// flight the frame is dropped and counted (timer_queue_dropped).
type txQueue struct {
	bufs [][]byte
	free chan int
	full chan int
	cnt  *counters
	send func(frame []byte)

	closeOnce sync.Once
	done      chan struct{}
}

func newTxQueue(n, frameCap int, cnt *counters, send func([]byte)) *txQueue {
	q := &txQueue{
		bufs: make([][]byte, n),
		free: make(chan int, n),
		full: make(chan int, n),
		cnt:  cnt,
		send: send,
		done: make(chan struct{}),
	}
	for i := range n {
		q.bufs[i] = make([]byte, 0, frameCap)
		q.free <- i
	}
	return q
}

// push queues a copy of frame; it never blocks.
func (q *txQueue) push(frame []byte) {
	var i int
	select {
	case i = <-q.free:
	default:
		q.cnt.inc(cTimerQueueDropped)
		return
	}
	q.bufs[i] = append(q.bufs[i][:0], frame...)
	q.full <- i
}

func (q *txQueue) run() {
	defer close(q.done)
	for i := range q.full {
		q.send(q.bufs[i])
		q.free <- i
	}
}

// close sends what is queued and stops the goroutine. No push may run
// concurrently with or after close.
func (q *txQueue) close() {
	q.closeOnce.Do(func() { close(q.full) })
	<-q.done
}
