package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/standbynic/standbynic/internal/netlab"
	"github.com/standbynic/standbynic/internal/pktpump"
	"github.com/standbynic/standbynic/nic"
)

// The iperf3 server's port in srv.
const iperf3Port = 5201

// errNoIperf3 is returned when the iperf3 command is missing.
var errNoIperf3 = errors.New("iperf3 not found in PATH: install the Debian package iperf3")

// The veths' offloads in both kinds of round: what Linux gives a new veth
// (ethtool -k: tx-checksumming, scatter-gather, TSO and GSO on, GRO off),
// set explicitly so the comparison does not depend on the lab's defaults.
var forwardOffloads = []struct {
	name     string
	set, get uint32
	on       bool
}{
	{"tx-checksumming", unix.ETHTOOL_STXCSUM, unix.ETHTOOL_GTXCSUM, true},
	{"scatter-gather", unix.ETHTOOL_SSG, unix.ETHTOOL_GSG, true},
	{"tcp-segmentation-offload", unix.ETHTOOL_STSO, unix.ETHTOOL_GTSO, true},
	{"generic-segmentation-offload", unix.ETHTOOL_SGSO, unix.ETHTOOL_GGSO, true},
	{"generic-receive-offload", unix.ETHTOOL_SGRO, unix.ETHTOOL_GGRO, false},
}

func runForward(ctx context.Context, e *env, s *Scenario) error {
	n := pick(e, 20_000, 200_000)
	tcpSeconds, omit := pick(e, 1, 4), pick(e, 0, 1)
	iperf3, err := exec.LookPath("iperf3")
	if err != nil {
		return fmt.Errorf("forwarding: %w", errNoIperf3)
	}
	version := iperf3Version(iperf3)
	clientArgs := []string{"-c", "", "-p", strconv.Itoa(iperf3Port), "-t", strconv.Itoa(tcpSeconds), "-O", strconv.Itoa(omit), "-J", "--connect-timeout", "3000"}
	s.Notes = append(s.Notes,
		fmt.Sprintf("frames: %d 60-byte frames per round (local experimental EtherType 0x88b5, so no protocol stack touches them) from srv0 through the nic namespace to a TPACKET_V3 counter on host0, at most %d in flight", n, e.window()),
		fmt.Sprintf("TCP: %s, one stream from host to srv, the same command for both: server `iperf3 -s -1 -B 198.18.0.1 -p %d` in srv, a new one for each round, client `iperf3 -c 198.18.0.1 -p %d -t %d -O %d -J --connect-timeout 3000` in host (%d s measured after %d s left out for slow start; default socket options, MTU 1500); the row is end.sum_received.bits_per_second of the client's JSON report", version, iperf3Port, iperf3Port, tcpSeconds, omit, tcpSeconds, omit),
		"standbynic: the device in D0 (AF_PACKET ports on wire0 and hport0, forwarding both ways); baseline: a Linux bridge br0 in the nic namespace enslaving the same two veths",
		"rounds alternate within each run: run 1 device then bridge, run 2 bridge then device, and so on; before each round the other is taken down (device closed, or br0 deleted)",
		"baseline: "+implBridge,
	)
	l, err := newLab(ctx)
	if err != nil {
		return skipOrFail(s, "forwarding", err)
	}
	defer l.Close()
	offloads, err := setForwardOffloads(l)
	if err != nil {
		return fmt.Errorf("offloads: %w", err)
	}
	s.Notes = append(s.Notes, "offloads on srv0, wire0, hport0 and host0 in every round (set explicitly, read back): "+offloads)
	hostMAC, srvMAC, err := labMACs(l)
	if err != nil {
		return err
	}
	frame := make([]byte, 60)
	copy(frame[0:], hostMAC[:])
	copy(frame[6:], srvMAC[:])
	frame[12], frame[13] = 0x88, 0xb5
	frames := [][]byte{frame}
	src, err := openPort(l, netlab.Srv, netlab.SrvLink)
	if err != nil {
		return err
	}
	defer src.Close()
	clientArgs[1] = l.Addr.Srv4.String()

	frameParam, tcpParam := "60-byte frames", fmt.Sprintf("iperf3, 1 stream, %d s", tcpSeconds)
	ms := map[string][2]*Measurement{}
	for _, impl := range []string{implD0, implBridge} {
		ms[impl] = [2]*Measurement{
			s.add(&Measurement{Impl: impl, Param: frameParam, Metric: metricRate, Unit: "frames/s", BaselineImpl: implBridge}),
			s.add(&Measurement{Impl: impl, Param: tcpParam, Metric: "TCP throughput", Unit: "Mbit/s", BaselineImpl: implBridge}),
		}
	}
	retries := 0
	retrans := map[string][]string{}
	tcpFailures := map[string][]string{}
	defer func() {
		if retries > 0 {
			s.Notes = append(s.Notes, fmt.Sprintf("%d frame runs repeated because frames were lost before the receiver (a veth backlog shared with the machine)", retries))
		}
		for _, impl := range []string{implD0, implBridge} {
			fr, tcp := ms[impl][0], ms[impl][1]
			fr.Extra = append(fr.Extra, "samples "+strings.Join(fmtSamples(fr.Samples), ", "))
			tcp.Extra = append(tcp.Extra, "samples "+strings.Join(fmtSamples(tcp.Samples), ", "))
			if len(retrans[impl]) > 0 {
				tcp.Extra = append(tcp.Extra, "retransmits "+strings.Join(retrans[impl], ", "))
			}
			if impl == implD0 {
				// Rounds are paired within a run, so the ratio per run
				// cancels the machine's drift between runs.
				for i, m := range ms[implD0] {
					if r := pairedRatios(m.Samples, ms[implBridge][i].Samples); r != "" {
						m.Extra = append(m.Extra, r)
					}
				}
			}
			if f := tcpFailures[impl]; len(f) > 0 {
				tcp.Extra = append(tcp.Extra, fmt.Sprintf("iperf3 failed in %d rounds (counted as 0): %s", len(f), f[0]))
			}
		}
	}()
	measure := func(impl string) error {
		sink, err := openPort(l, netlab.Host, netlab.HostLink)
		if err != nil {
			return err
		}
		var count atomic.Uint64
		done := make(chan struct{})
		go pktpump.CountLoop(sink, &count, done)
		var rate float64
		err = retryLost(&retries, func() error {
			var err error
			rate, err = pktpump.Pump(ctx, src, frames, n, e.window(), stallWait, count.Load)
			return err
		})
		sink.Close()
		<-done
		if err != nil {
			return fmt.Errorf("%s frames: %w", impl, err)
		}
		res, err := runIperf3(ctx, l, iperf3, clientArgs, time.Duration(tcpSeconds+15)*time.Second)
		mbps := res.ReceivedBPS / 1e6
		if err != nil {
			if impl == implBridge || ctx.Err() != nil {
				return fmt.Errorf("%s tcp: %w", impl, err)
			}
			// The device under test may carry no TCP at all: that is a
			// result (0), not a broken harness.
			tcpFailures[impl] = append(tcpFailures[impl], err.Error())
			mbps = 0
		} else {
			retrans[impl] = append(retrans[impl], strconv.Itoa(res.Retransmits))
		}
		e.logf("bench: forward: %s: %.0f frames/s, %.0f Mbit/s", impl, rate, mbps)
		ms[impl][0].Samples = append(ms[impl][0].Samples, rate)
		ms[impl][1].Samples = append(ms[impl][1].Samples, mbps)
		return nil
	}
	round := func(impl string) error {
		if impl == implBridge {
			if err := addBridge(l); err != nil {
				return fmt.Errorf("bridge: %w", err)
			}
			err := waitBridge(ctx, l, src, frame)
			if err == nil {
				err = measure(implBridge)
			}
			return errors.Join(err, delBridge(l))
		}
		dev, err := newDevice(l, hostMAC, nil, nil, nil)
		if err != nil {
			return err
		}
		err = measure(implD0)
		return errors.Join(err, dev.Close())
	}
	return repeat(ctx, e.runs, func(run int) error {
		order := []string{implD0, implBridge}
		if run%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, impl := range order {
			if err := round(impl); err != nil {
				return err
			}
		}
		return nil
	})
}

// pairedRatios returns "ratio per run (device ÷ bridge in the same run)
// …; median r" for dev over base, or "" without a pair.
func pairedRatios(dev, base []float64) string {
	var r []float64
	for i := range min(len(dev), len(base)) {
		if base[i] > 0 {
			r = append(r, dev[i]/base[i])
		}
	}
	if len(r) == 0 {
		return ""
	}
	return fmt.Sprintf("ratio per run (device ÷ bridge in the same run) %s; median %.3g", strings.Join(fmtSamples(r), ", "), median(r))
}

// setForwardOffloads sets forwardOffloads on the four veth ends of the
// forwarding path and returns them as read back ("tx-checksumming on,
// …"); the four must agree.
func setForwardOffloads(l *netlab.Lab) (string, error) {
	links := []struct {
		ns   netlab.Namespace
		name string
	}{{netlab.Srv, netlab.SrvLink}, {netlab.NIC, netlab.WireLink}, {netlab.NIC, netlab.HostPortLink}, {netlab.Host, netlab.HostLink}}
	var first string
	for _, lk := range links {
		var got []string
		err := l.Do(lk.ns, func() error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return os.NewSyscallError("socket", err)
			}
			defer unix.Close(fd)
			for _, o := range forwardOffloads {
				v := uint32(0)
				if o.on {
					v = 1
				}
				if err := ethtoolValueIoctl(fd, lk.name, o.set, &v); err != nil {
					return fmt.Errorf("%s: set %s: %w", lk.name, o.name, err)
				}
			}
			for _, o := range forwardOffloads {
				var v uint32
				if err := ethtoolValueIoctl(fd, lk.name, o.get, &v); err != nil {
					return fmt.Errorf("%s: get %s: %w", lk.name, o.name, err)
				}
				if (v != 0) != o.on {
					return fmt.Errorf("%s: %s is %d after setting it to %t", lk.name, o.name, v, o.on)
				}
				got = append(got, fmt.Sprintf("%s %s", o.name, map[bool]string{true: "on", false: "off"}[v != 0]))
			}
			return nil
		})
		if err != nil {
			return "", err
		}
		if s := strings.Join(got, ", "); first == "" {
			first = s
		} else if s != first {
			return "", fmt.Errorf("%s: offloads %s differ from srv0's %s", lk.name, s, first)
		}
	}
	return first, nil
}

// ethtoolValueIoctl runs one legacy ethtool ioctl carrying a struct
// ethtool_value on link: a set with *v, or a get into *v.
func ethtoolValueIoctl(fd int, link string, cmd uint32, v *uint32) error {
	ev := struct{ cmd, data uint32 }{cmd, *v}
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data unsafe.Pointer
		_    [16]byte
	}
	copy(ifr.name[:], link)
	ifr.data = unsafe.Pointer(&ev)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&ev)
	if errno != 0 {
		return os.NewSyscallError("ioctl SIOCETHTOOL", errno)
	}
	*v = ev.data
	return nil
}

// addBridge joins wire0 and hport0 with a bridge br0 in the nic
// namespace.
func addBridge(l *netlab.Lab) error {
	return l.Do(netlab.NIC, func() error {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("add br0: %w", err)
		}
		for _, name := range []string{netlab.WireLink, netlab.HostPortLink} {
			lk, err := netlink.LinkByName(name)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if err := netlink.LinkSetMaster(lk, br); err != nil {
				return fmt.Errorf("enslave %s: %w", name, err)
			}
		}
		if err := netlink.LinkSetUp(br); err != nil {
			return fmt.Errorf("br0 up: %w", err)
		}
		return nil
	})
}

// delBridge deletes br0, which frees wire0 and hport0 for the device.
func delBridge(l *netlab.Lab) error {
	return l.Do(netlab.NIC, func() error {
		lk, err := netlink.LinkByName("br0")
		if err != nil {
			return fmt.Errorf("br0: %w", err)
		}
		if err := netlink.LinkDel(lk); err != nil {
			return fmt.Errorf("delete br0: %w", err)
		}
		return nil
	})
}

// waitBridge waits until a frame from srv0 reaches host0 through the
// bridge (its ports forward once they are up).
func waitBridge(ctx context.Context, l *netlab.Lab, src nic.Port, frame []byte) error {
	sink, err := openPort(l, netlab.Host, netlab.HostLink)
	if err != nil {
		return err
	}
	var count atomic.Uint64
	done := make(chan struct{})
	go pktpump.CountLoop(sink, &count, done)
	defer func() { sink.Close(); <-done }()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for count.Load() == 0 {
		if time.Now().After(deadline) {
			return errors.New("bridge: no frame forwarded within 10 s")
		}
		if _, err := src.WriteBatch([][]byte{frame}); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// iperf3Version returns the first line of `iperf3 --version` ("iperf
// 3.12 (cJSON 1.7.15)"), or "iperf3" when it does not answer.
func iperf3Version(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "iperf3"
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}

// iperf3Server is an iperf3 server the scenario started in srv.
type iperf3Server struct {
	cmd    *exec.Cmd
	done   chan struct{}
	output bytes.Buffer // after done
}

// runIperf3 runs one test: a one-off server (-1) in srv, then the client
// with args in host; it waits for the server to exit, so the next test
// finds the port free and no server still busy with this one.
func runIperf3(ctx context.Context, l *netlab.Lab, bin string, args []string, timeout time.Duration) (iperf3Result, error) {
	srv, err := startIperf3Server(ctx, l, bin)
	if err != nil {
		return iperf3Result{}, err
	}
	res, err := runIperf3Client(ctx, l, bin, args, timeout)
	if err != nil {
		srv.stop() // a client that never connected leaves it waiting
		return res, err
	}
	select {
	case <-srv.done:
	case <-time.After(10 * time.Second):
		srv.stop()
		return res, errors.New("iperf3 server in srv: still running 10 s after its test")
	}
	return res, nil
}

// startIperf3Server starts a one-off `iperf3 -s -1` bound to srv0's
// address in srv and waits (at most 10 s) until it says it listens.
func startIperf3Server(ctx context.Context, l *netlab.Lab, bin string) (*iperf3Server, error) {
	s := &iperf3Server{done: make(chan struct{})}
	s.cmd = exec.Command(bin, "-s", "-1", "-B", l.Addr.Srv4.String(), "-p", strconv.Itoa(iperf3Port), "--forceflush")
	pr, pw := io.Pipe()
	s.cmd.Stdout, s.cmd.Stderr = pw, pw
	// The child is forked from the thread Do switched into srv.
	if err := l.Do(netlab.Srv, s.cmd.Start); err != nil {
		return nil, fmt.Errorf("start iperf3 server in srv: %w", err)
	}
	listening := make(chan struct{})
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(pr)
		said := false
		for sc.Scan() {
			if !said && strings.Contains(sc.Text(), "Server listening on") {
				said = true
				close(listening)
			}
			s.output.WriteString(sc.Text() + "\n")
		}
		io.Copy(io.Discard, pr)
	}()
	go func() { s.cmd.Wait(); pw.Close() }()
	select {
	case <-listening:
		return s, nil
	case <-s.done:
		err := fmt.Errorf("iperf3 server in srv exited: %s", strings.TrimSpace(s.output.String()))
		return nil, err
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	case <-time.After(10 * time.Second):
		s.stop()
		return nil, errors.New("iperf3 server in srv: not listening within 10 s")
	}
}

// stop kills the server and waits for it.
func (s *iperf3Server) stop() {
	s.cmd.Process.Kill()
	<-s.done
}

// runIperf3Client runs the iperf3 client with args in host, bounded by
// timeout, and parses its JSON report.
func runIperf3Client(ctx context.Context, l *netlab.Lab, bin string, args []string, timeout time.Duration) (iperf3Result, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := l.Do(netlab.Host, cmd.Start); err != nil {
		return iperf3Result{}, fmt.Errorf("start iperf3 client in host: %w", err)
	}
	werr := cmd.Wait()
	res, perr := parseIperf3(stdout.Bytes())
	switch {
	case perr != nil && werr != nil:
		return res, fmt.Errorf("iperf3 client: %w (%v)", perr, werr)
	case perr != nil:
		return res, perr
	case werr != nil:
		return res, fmt.Errorf("iperf3 client: %w: %s", werr, strings.TrimSpace(stderr.String()))
	}
	return res, nil
}
