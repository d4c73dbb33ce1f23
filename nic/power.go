package nic

import (
	"fmt"
	"time"
)

var zeroTime time.Time

// Sleep puts the device in D3: D0 → arming (compile the wake table from
// the armed slots and extra patterns, attach the kernel prefilter to the
// wire port, swap the datapath table) → D3. On failure it returns to D0.
// When it returns, every wire frame taken before D3 has been handed to the
// host port, and no later one will be.
func (d *Device) Sleep() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.transition(D0, Arming) {
		return fmt.Errorf("sleep: %w: in %v, want D0", ErrState, d.State())
	}
	t, err := d.buildTable(d.slots, d.patterns)
	if err == nil {
		err = d.installTable(t)
	}
	if err != nil {
		d.transition(Arming, D0)
		return fmt.Errorf("sleep: %w", err)
	}
	d.transition(Arming, D3)
	// A batch read in D0 may still be on its way to the host port: wait
	// for it, so that nothing reaches the host once Sleep has returned.
	d.toHost.Lock()
	d.toHost.Unlock()
	return nil
}

// Wake wakes the host from D3 on its own behalf (reason host). Wire frames
// are buffered until Resume.
func (d *Device) Wake() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.State() != D3 {
		return fmt.Errorf("wake: %w: in %v, want D3", ErrState, d.State())
	}
	d.raiseWake(WakeEvent{Reason: WakeHost}, nil, zeroTime)
	return nil
}

// Resume returns the device to D0 after a wake: it detaches the prefilter,
// delivers the frames buffered since the wake to the host port in order,
// then forwards again. Armed slots stay armed (and keep their timers)
// until the host disarms them.
func (d *Device) Resume() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.State() != Waking {
		return fmt.Errorf("resume: %w: in %v, want waking", ErrState, d.State())
	}
	d.detachPrefilter()
	d.post.mu.Lock()
	defer d.post.mu.Unlock()
	d.post.drain(d.resumeBatch, func(frames [][]byte) {
		d.cnt.add(cPostwakeDelivered, uint64(len(frames)))
		d.writeHost(frames)
	})
	d.transition(Waking, D0)
	return nil
}
