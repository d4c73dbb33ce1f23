package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/standbynic/standbynic/internal/netlab"
)

// kernelConns is a set of established loopback TCP connections in a lab
// namespace, as raw file descriptors.
type kernelConns struct {
	clients, servers []int
	listener         int
}

func (k *kernelConns) close() {
	for _, fd := range append(k.clients, k.servers...) {
		unix.Close(fd)
	}
	if k.listener > 0 {
		unix.Close(k.listener)
	}
}

// dialKernelConns opens n connections to a listener on addr inside ns
// (called on a thread in ns); the sockets stay there.
func dialKernelConns(addr [4]byte, n int) (*kernelConns, error) {
	k := &kernelConns{}
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	k.listener = lfd
	if err := unix.Bind(lfd, &unix.SockaddrInet4{Addr: addr}); err != nil {
		k.close()
		return nil, os.NewSyscallError("bind", err)
	}
	const batch = 1000
	if err := unix.Listen(lfd, batch); err != nil {
		k.close()
		return nil, os.NewSyscallError("listen", err)
	}
	sa, err := unix.Getsockname(lfd)
	if err != nil {
		k.close()
		return nil, os.NewSyscallError("getsockname", err)
	}
	for len(k.clients) < n {
		m := min(batch, n-len(k.clients))
		for range m {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				k.close()
				return nil, os.NewSyscallError("socket", err)
			}
			k.clients = append(k.clients, fd)
			if err := unix.Connect(fd, sa); err != nil {
				k.close()
				return nil, os.NewSyscallError("connect", err)
			}
		}
		for range m {
			fd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
			if err != nil {
				k.close()
				return nil, os.NewSyscallError("accept", err)
			}
			k.servers = append(k.servers, fd)
		}
	}
	return k, nil
}

// setKeepalive turns the kernel's keep-alive on (idle, interval 1 s,
// 1 probe) or off on the client sockets fds.
func setKeepalive(fds []int, on bool) error {
	v := 0
	if on {
		v = 1
	}
	for _, fd := range fds {
		if on {
			for _, o := range []int{unix.TCP_KEEPIDLE, unix.TCP_KEEPINTVL, unix.TCP_KEEPCNT} {
				if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, o, 1); err != nil {
					return os.NewSyscallError("setsockopt", err)
				}
			}
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, v); err != nil {
			return os.NewSyscallError("setsockopt", err)
		}
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// kernelKeepalive measures the Linux kernel's own TCP keep-alive on as
// many loopback connections as the fd limit allows (at most 10^4, 10^3
// in a quick run) in a lab namespace: kernel CPU per probe (from
// /proc/stat, keep-alive windows minus idle windows of the same length)
// and slab memory per socket. It returns the two measurements and their
// parameter, or nils when the lab cannot be built.
func kernelKeepalive(ctx context.Context, e *env, s *Scenario) (cpu, mem *Measurement, param string, err error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return nil, nil, "", os.NewSyscallError("getrlimit", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			return nil, nil, "", os.NewSyscallError("setrlimit", err)
		}
	}
	want := pick(e, 1_000, 10_000)
	n := min(want, int(min(lim.Cur, 1<<20)-512)/2)
	if n < 100 {
		s.Skipped = append(s.Skipped, fmt.Sprintf("kernel keep-alive: the fd limit %d leaves room for %d connections", lim.Cur, n))
		return nil, nil, "", nil
	}
	window := pick(e, 500*time.Millisecond, 2*time.Second)
	l, err := newLab(ctx)
	if err != nil {
		return nil, nil, "", skipOrFail(s, "kernel keep-alive", err)
	}
	defer l.Close()

	slab0, err := memInfoKB("Slab")
	if err != nil {
		return nil, nil, "", err
	}
	var conns *kernelConns
	if err := l.Do(netlab.Srv, func() error {
		var err error
		conns, err = dialKernelConns(l.Addr.Srv4.As4(), n)
		return err
	}); err != nil {
		return nil, nil, "", fmt.Errorf("kernel connections: %w", err)
	}
	defer conns.close()
	slab1, err := memInfoKB("Slab")
	if err != nil {
		return nil, nil, "", err
	}

	param = fmt.Sprintf("%d sockets", n)
	cpu = s.add(&Measurement{Impl: implKernelKA, Param: param, X: float64(n), Metric: metricCPU, Unit: "ns", BaselineImpl: implKernelKA})
	mem = s.add(&Measurement{Impl: implKernelKA, Param: param, X: float64(n), Metric: metricMem, Unit: "B", BaselineImpl: implKernelKA})
	// One connection is two sockets in this kernel; both are counted.
	perSocket := float64(slab1-slab0) * 1024 / float64(2*n)
	for range e.runs {
		mem.Samples = append(mem.Samples, perSocket)
	}
	probes := func() (uint64, error) {
		var v uint64
		err := l.Do(netlab.Srv, func() error {
			var err error
			v, err = netstatCounter("TcpExt", "TCPKeepAlive")
			return err
		})
		return v, err
	}
	// window measures the kernel CPU and the probes of one window.
	measure := func() (time.Duration, uint64, error) {
		c0, err := kernelCPU()
		if err != nil {
			return 0, 0, err
		}
		p0, err := probes()
		if err != nil {
			return 0, 0, err
		}
		if err := sleepCtx(ctx, window); err != nil {
			return 0, 0, err
		}
		c1, err := kernelCPU()
		if err != nil {
			return 0, 0, err
		}
		p1, err := probes()
		return c1 - c0, p1 - p0, err
	}
	idle := make([]time.Duration, e.runs)
	for i := range idle {
		c, _, err := measure()
		if err != nil {
			return nil, nil, "", err
		}
		idle[i] = c
	}
	// Keep-alive is turned on in ten steps over one second, so the
	// probes (each socket's every second) spread evenly over time instead
	// of coming in one burst per second.
	const steps = 10
	for i := range steps {
		if err := setKeepalive(conns.clients[i*n/steps:(i+1)*n/steps], true); err != nil {
			return nil, nil, "", err
		}
		if err := sleepCtx(ctx, time.Second/steps); err != nil {
			return nil, nil, "", err
		}
	}
	// The first probes go out one idle time (1 s) after SO_KEEPALIVE.
	if err := sleepCtx(ctx, 1100*time.Millisecond); err != nil {
		return nil, nil, "", err
	}
	var total uint64
	for i := range e.runs {
		c, p, err := measure()
		if err != nil {
			return nil, nil, "", err
		}
		if p == 0 {
			return nil, nil, "", errors.New("kernel keep-alive: no probe counted in a window (TcpExt TCPKeepAlive)")
		}
		total += p
		cpu.Samples = append(cpu.Samples, float64((c-idle[i]).Nanoseconds())/float64(p))
	}
	if err := setKeepalive(conns.clients, false); err != nil {
		return nil, nil, "", err
	}
	rate := float64(total) / (window.Seconds() * float64(e.runs))
	cpu.Extra = append(cpu.Extra, fmt.Sprintf("%.0f probes/s seen (TcpExt TCPKeepAlive)", rate))
	mem.Extra = append(mem.Extra, fmt.Sprintf("/proc/meminfo Slab grew %d KiB for %d connections (%d sockets)", slab1-slab0, n, 2*n))
	s.Notes = append(s.Notes,
		fmt.Sprintf("kernel: %d loopback TCP connections (raw sockets, fd limit %d) in a lab namespace, client sockets with SO_KEEPALIVE and TCP_KEEPIDLE = TCP_KEEPINTVL = 1 s, TCP_KEEPCNT = 1; probes counted with TcpExt TCPKeepAlive of the namespace", n, lim.Cur),
		fmt.Sprintf("kernel CPU: system+irq+softirq time of the whole machine (/proc/stat, 10 ms ticks) over %v windows with keep-alive on, minus the same over idle windows before it, per probe counted; it includes the peer's ACK (the same kernel answers it) and any other activity on the machine, so it is an estimate; the kernel's send lateness is not observable this way", window),
		"kernel memory: growth of the kernel slab (/proc/meminfo Slab) when the connections were opened, per socket; the engine's rows are compared with it",
	)
	return cpu, mem, param, nil
}
