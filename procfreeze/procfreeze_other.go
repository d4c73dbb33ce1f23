//go:build !linux

package procfreeze

import (
	"context"
	"errors"
	"net"
	"runtime"
	"time"
)

var errUnsupported = errors.New("procfreeze: not implemented on " + runtime.GOOS)

// Process is a held program (Linux only).
type Process struct{}

// Run returns an error: not implemented on this GOOS.
func Run(cfg *Config, rc RunConfig) (*Process, error) { return nil, errUnsupported }

// Adopt returns an error: not implemented on this GOOS.
func Adopt(cfg *Config, pid int) (*Process, error) { return nil, errUnsupported }

// Recover returns an error: not implemented on this GOOS.
func Recover() ([]Recovered, error) { return nil, errUnsupported }

func (p *Process) PID() int                         { return 0 }
func (p *Process) Mode() Mode                       { return 0 }
func (p *Process) Dir() string                      { return "" }
func (p *Process) Started() bool                    { return false }
func (p *Process) Frozen() bool                     { return false }
func (p *Process) Alive() bool                      { return false }
func (p *Process) Exited() <-chan struct{}          { return nil }
func (p *Process) Freeze(ctx context.Context) error { return errUnsupported }
func (p *Process) Thaw(ctx context.Context) error   { return errUnsupported }
func (p *Process) CPU() (time.Duration, error)      { return 0, errUnsupported }
func (p *Process) Close() error                     { return nil }
func (s *Socket) Close() error                      { return nil }
func (p *Process) Sockets(idle func(*net.TCPConn) error) ([]*Socket, error) {
	return nil, errUnsupported
}
