package xdpgen

import (
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"

	"github.com/standbynic/standbynic/internal/netlab"
	"github.com/standbynic/standbynic/internal/pktpump"
	"github.com/standbynic/standbynic/nic"
)

// TestIntegrationPump: frames sent from srv0 by the kernel arrive on
// wire0 (which runs an XDP_PASS program, so its veth takes them) and are
// all counted by a plain TPACKET loop; without a program on the
// receiving side none arrive, and Pump gives up by itself.
func TestIntegrationPump(t *testing.T) {
	l := netlab.NewForTest(t, nil)
	srv, err := l.Interface(netlab.Srv, netlab.SrvLink)
	if err != nil {
		t.Fatal(err)
	}
	wire, err := l.Interface(netlab.NIC, netlab.WireLink)
	if err != nil {
		t.Fatal(err)
	}
	var s *Sender
	if err := l.Do(netlab.Srv, func() (err error) { s, err = NewSender(); return err }); err != nil {
		if errors.Is(err, os.ErrPermission) {
			t.Skipf("xdpgen: needs CAP_BPF: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var port nic.Port
	if err := l.Do(netlab.NIC, func() (err error) { port, err = nic.OpenPacketPort(netlab.WireLink, nil); return err }); err != nil {
		t.Fatal(err)
	}
	var count atomic.Uint64
	done := make(chan struct{})
	go pktpump.CountLoop(port, &count, done)
	t.Cleanup(func() { port.Close(); <-done })

	frame := make([]byte, 60)
	copy(frame, wire.HardwareAddr)
	copy(frame[6:], srv.HardwareAddr)
	frame[12], frame[13] = 0x88, 0xb5 // local experimental ethertype

	// No NAPI on wire0 yet: the frames go nowhere.
	err = l.Do(netlab.Srv, func() error {
		_, err := s.Pump(srv.Index, frame, 1000, 1000, 200*time.Millisecond, 5*time.Second, count.Load)
		return err
	})
	if !errors.Is(err, ErrLost) {
		t.Fatalf("Pump without a program on the receiver = %v, want ErrLost", err)
	}

	var pass link.Link
	if err := l.Do(netlab.NIC, func() (err error) { pass, err = AttachPass(wire.Index); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pass.Close() })
	const n = 200000
	before := count.Load()
	var rate float64
	if err := l.Do(netlab.Srv, func() (err error) {
		rate, err = s.Pump(srv.Index, frame, n, 32768, 5*time.Second, 30*time.Second, count.Load)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got := count.Load() - before; got < n {
		t.Fatalf("counted %d, want %d", got, n)
	}
	if drops := port.Stats().RxDropped; drops != 0 {
		t.Errorf("ring dropped %d", drops)
	}
	t.Logf("%d frames at %.0f frames/s", n, rate)
}
