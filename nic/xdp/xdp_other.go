//go:build !linux

package xdp

import "fmt"

// Program is the loaded XDP program; on this platform New always fails
// with ErrUnsupported.
type Program struct{}

// New returns ErrUnsupported: XDP is Linux's.
func New(cfg *Config) (*Program, error) {
	return nil, fmt.Errorf("xdp: %w on this platform", ErrUnsupported)
}

// Instructions is the program's length.
func (p *Program) Instructions() int { return 0 }

// FD is the program's file descriptor.
func (p *Program) FD() int { return -1 }

// Arm returns ErrUnsupported.
func (p *Program) Arm(idx int, s Slot) (bool, error) { return false, ErrUnsupported }

// Update does nothing.
func (p *Program) Update(idx int, rcvNxt, sndNxt uint32) {}

// Pause does nothing.
func (p *Program) Pause(idx int) {}

// TSRecent returns 0.
func (p *Program) TSRecent(idx int) uint32 { return 0 }

// Disarm does nothing.
func (p *Program) Disarm(idx int) error { return nil }

// SlotCounters returns zeros.
func (p *Program) SlotCounters(idx int) SlotCounters { return SlotCounters{} }

// PassAll does nothing.
func (p *Program) PassAll() {}

// Count returns 0.
func (p *Program) Count(r Reason) uint64 { return 0 }

// Run returns ErrUnsupported.
func (p *Program) Run(frame []byte) (uint32, error) { return 0, ErrUnsupported }

// Attach returns ErrUnsupported.
func (p *Program) Attach(ifindex int) error { return ErrUnsupported }

// Detach does nothing.
func (p *Program) Detach() error { return nil }

// Close does nothing.
func (p *Program) Close() error { return nil }
