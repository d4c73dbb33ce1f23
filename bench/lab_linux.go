package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/standbynic/standbynic/internal/cpupin"
	"github.com/standbynic/standbynic/internal/netlab"
	"github.com/standbynic/standbynic/internal/pktpump"
	"github.com/standbynic/standbynic/nic"
)

// drainWait bounds the wait for a device counter to catch up.
const drainWait = 10 * time.Second

// errPrivilege is wrapped when the process cannot build a lab.
var errPrivilege = errors.New("needs CAP_SYS_ADMIN (namespaces), CAP_NET_ADMIN and CAP_NET_RAW: run as root")

// newLab builds a three-namespace lab (srv, nic, host); a missing
// privilege is reported as errPrivilege.
func newLab(ctx context.Context) (*netlab.Lab, error) {
	if err := netlab.Privileged(); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("%w: %v", errPrivilege, err)
		}
		return nil, fmt.Errorf("lab probe: %w", err)
	}
	l, err := netlab.New(ctx, nil)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("%w: %v", errPrivilege, err)
		}
		return nil, fmt.Errorf("lab: %w", err)
	}
	return l, nil
}

// skipOrFail records a missing privilege in s.Skipped (and returns nil)
// or returns err.
func skipOrFail(s *Scenario, what string, err error) error {
	if errors.Is(err, errPrivilege) {
		s.Skipped = append(s.Skipped, fmt.Sprintf("%s: %v", what, err))
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// openPort opens an AF_PACKET port on link in ns.
func openPort(l *netlab.Lab, ns netlab.Namespace, link string) (nic.Port, error) {
	return openPortCfg(l, ns, link, nil)
}

// openPortCfg is openPort with the port's configuration.
func openPortCfg(l *netlab.Lab, ns netlab.Namespace, link string, cfg *nic.PortConfig) (nic.Port, error) {
	var p nic.Port
	err := l.Do(ns, func() error {
		var err error
		p, err = nic.OpenPacketPort(link, cfg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open %s/%s: %w", ns, link, err)
	}
	return p, nil
}

// labMACs returns the MACs of host0 and srv0.
func labMACs(l *netlab.Lab) (host, srv [6]byte, err error) {
	hi, err := l.Interface(netlab.Host, netlab.HostLink)
	if err != nil {
		return host, srv, err
	}
	si, err := l.Interface(netlab.Srv, netlab.SrvLink)
	if err != nil {
		return host, srv, err
	}
	return [6]byte(hi.HardwareAddr), [6]byte(si.HardwareAddr), nil
}

// pktpump.ErrLost says frames stopped arriving before the count was
// reached: lost outside the measured receiver (a veth backlog shared with
// the rest of the machine), so the run is void and may be repeated.
// pinSender runs fn, which sends from the calling goroutine, with that
// goroutine's thread alone on one CPU and every other thread of the
// process on the others (internal/cpupin): on veth the receive path runs
// in the sender's softirq, and a receiver the scheduler put on the
// sender's CPU would take its time off the rate by chance. Without two
// CPUs fn runs unpinned; the scenario's notes say which.
func pinSender(s *Scenario, fn func() error) error {
	gen, restore, err := cpupin.Split()
	if err != nil {
		s.Notes = append(s.Notes, fmt.Sprintf("sender not pinned: %v", err))
		return fn()
	}
	defer restore()
	s.Notes = append(s.Notes, fmt.Sprintf("the sender runs alone on CPU %d, every other thread (the receivers under test among them) on the other CPUs", gen))
	return fn()
}

// stallWait is how long a sender waits for its receiver to count a frame
// before it declares the frames in flight lost (and the run is repeated).
const stallWait = time.Second

// retryLost runs fn up to three times while it fails with pktpump.ErrLost
// and counts the retries in *retries.
func retryLost(retries *int, fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || !errors.Is(err, pktpump.ErrLost) || attempt == 3 {
			return err
		}
		*retries++
	}
}

// countingPort counts the frames its owner read from it: the flow
// control of a pump into a device.
type countingPort struct {
	nic.Port
	n atomic.Uint64
}

// ReadBatch implements nic.Port.ReadBatch.
func (p *countingPort) ReadBatch(pkts []nic.Packet) (int, error) {
	n, err := p.Port.ReadBatch(pkts)
	p.n.Add(uint64(n))
	return n, err
}

// rawSocket is a plain AF_PACKET socket without a ring, read with
// recvfrom: the simplest receive loop.
type rawSocket struct {
	fd int
}

// openRaw opens a raw packet socket bound to link in ns, with a 100 ms
// receive timeout so its loop can stop.
func openRaw(l *netlab.Lab, ns netlab.Namespace, link string) (*rawSocket, error) {
	ifi, err := l.Interface(ns, link)
	if err != nil {
		return nil, err
	}
	var fd int
	err = l.Do(ns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return os.NewSyscallError("socket", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return os.NewSyscallError("bind", err)
		}
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			return os.NewSyscallError("setsockopt", err)
		}
		// 4 MiB of receive buffer, as much as the ring has.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("raw socket on %s/%s: %w", ns, link, err)
	}
	return &rawSocket{fd: fd}, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// loop counts frames until stop is set.
func (r *rawSocket) loop(count *atomic.Uint64, stop *atomic.Bool, done chan<- struct{}) {
	defer close(done)
	buf := make([]byte, 2048)
	for !stop.Load() {
		n, _, err := unix.Recvfrom(r.fd, buf, 0)
		if err == nil && n > 0 {
			count.Add(1)
		}
	}
}

// recvOne blocks until one frame arrives or the 100 ms timeout passes,
// and returns its length.
func (r *rawSocket) recvOne(buf []byte) (int, error) {
	n, _, err := unix.Recvfrom(r.fd, buf, 0)
	return min(n, len(buf)), err
}

// drops returns the kernel's drop count since the last call
// (PACKET_STATISTICS).
func (r *rawSocket) drops() uint64 {
	st, err := unix.GetsockoptTpacketStats(r.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return 0
	}
	return uint64(st.Drops)
}

func (r *rawSocket) Close() error { return unix.Close(r.fd) }
