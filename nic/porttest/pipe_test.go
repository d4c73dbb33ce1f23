package porttest

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/standbynic/standbynic/nic"
	"golang.org/x/net/bpf"
)

func TestPipeContract(t *testing.T) {
	TestPort(t, func(t *testing.T) (nic.Port, nic.Port) {
		a, b := Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		return a, b
	})
}

func TestPipeOverflowCounted(t *testing.T) {
	a, b, err := NewPipe(&Config{QueueLen: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	frames := make([][]byte, 10)
	for i := range frames {
		frames[i] = frame(60, SuiteEtherType, uint32(i))
	}
	if n, err := a.WriteBatch(frames); n != 10 || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	if q := b.Queued(); q != 4 {
		t.Errorf("Queued = %d, want 4", q)
	}
	got, _ := readN(t, b, 4, 8, 128)
	for i, g := range got {
		if !equal(g.frame, frames[i]) {
			t.Errorf("frame %d = %x, want the oldest frames kept", i, g.frame)
		}
	}
	want := nic.PortStats{RxFrames: 4, RxBytes: 240, RxDropped: 6}
	if d := cmp.Diff(want, b.Stats()); d != "" {
		t.Errorf("receiver stats (-want +got):\n%s", d)
	}
	want = nic.PortStats{TxFrames: 10, TxBytes: 600}
	if d := cmp.Diff(want, a.Stats()); d != "" {
		t.Errorf("sender stats (-want +got):\n%s", d)
	}
}

func TestPipeFilterCounted(t *testing.T) {
	a, b := Pipe()
	defer a.Close()
	defer b.Close()
	if err := b.SetFilter(etherTypeFilter(SuiteEtherType, 0xffff)); err != nil {
		t.Fatal(err)
	}
	a.WriteBatch([][]byte{frame(60, SuiteOtherEtherType, 0), frame(60, SuiteEtherType, 1), frame(20, SuiteOtherEtherType, 2)})
	if s := b.Stats(); s.RxFiltered != 2 || b.Queued() != 1 {
		t.Errorf("RxFiltered %d queued %d, want 2 and 1", s.RxFiltered, b.Queued())
	}
}

func TestPipeRefusesUnknownExtension(t *testing.T) {
	a, b := Pipe()
	defer a.Close()
	defer b.Close()
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtVLANTag},
		bpf.RetA{},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.SetFilter(prog); err == nil {
		t.Error("SetFilter accepted a program using SKF_AD_VLAN_TAG, which the VM cannot run")
	}
}

func TestNewPipeConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     *Config
		wantErr bool
	}{
		{"nil", nil, false},
		{"jumbo", &Config{MTU: 9000, QueueLen: 8}, false},
		{"mtu too small", &Config{MTU: 67}, true},
		{"mtu too big", &Config{MTU: 65536}, true},
		{"negative queue", &Config{QueueLen: -1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b, err := NewPipe(tt.cfg)
			if (err != nil) != tt.wantErr {
				t.Fatalf("NewPipe err = %v, wantErr %t", err, tt.wantErr)
			}
			if err == nil {
				a.Close()
				b.Close()
			}
		})
	}
	a, b, _ := NewPipe(&Config{MTU: 9000, NameA: "x", NameB: "y"})
	if a.Name() != "x" || b.Name() != "y" {
		t.Errorf("names %q %q", a.Name(), b.Name())
	}
	if n, err := a.WriteBatch([][]byte{frame(9014, SuiteEtherType, 0)}); n != 1 || err != nil {
		t.Errorf("jumbo frame: %d, %v", n, err)
	}
}

// TestPipeAllocs proves the steady-state pipe path allocates nothing, so
// device tests built on it can prove their own zero-allocation paths.
func TestPipeAllocs(t *testing.T) {
	a, b := Pipe()
	defer a.Close()
	defer b.Close()
	if err := b.SetFilter(etherTypeFilter(SuiteEtherType, 0xffff)); err != nil {
		t.Fatal(err)
	}
	frames := [][]byte{frame(100, SuiteEtherType, 1), frame(100, SuiteEtherType, 2, 0x8100, 5)}
	pkts := packets(4, 2048)
	run := func() {
		if n, err := a.WriteBatch(frames); n != 2 || err != nil {
			t.Fatalf("WriteBatch = %d, %v", n, err)
		}
		if n, err := b.ReadBatch(pkts); n != 2 || err != nil {
			t.Fatalf("ReadBatch = %d, %v", n, err)
		}
	}
	run() // size the queue's buffers
	if allocs := testing.AllocsPerRun(100, run); allocs != 0 {
		t.Errorf("write+read allocates %.1f times per run, want 0", allocs)
	}
}

func TestPipeCloseDiscardsQueued(t *testing.T) {
	a, b := Pipe()
	defer a.Close()
	a.WriteBatch([][]byte{frame(60, SuiteEtherType, 0)})
	b.Close()
	if _, err := b.ReadBatch(packets(1, 64)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadBatch after Close with a frame queued = %v, want net.ErrClosed", err)
	}
	b.SetReadDeadline(time.Time{})
}
