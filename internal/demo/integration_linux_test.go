//go:build linux

package demo

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/standbynic/standbynic/host"
	"github.com/standbynic/standbynic/internal/netlab"
)

// TestIntegrationDemo runs the demo for a short scenario and checks the
// summary's invariants: every push delivered, no host wake caused by a
// hardware keep-alive or an answered Ping, more channels than hardware
// slots, and the pcap files parse and hold frames.
func TestIntegrationDemo(t *testing.T) {
	netlab.RequirePrivileges(t)
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := filepath.Join(t.TempDir(), "out")
	var buf bytes.Buffer
	sum, err := Run(ctx, Options{Duration: 20 * time.Second, Seed: 7, OutDir: out, Drain: 20 * time.Second}, &buf)
	t.Logf("demo output:\n%s", buf.String())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}

	if lost := sum.Lost(); lost != 0 {
		t.Errorf("%d pushes lost", lost)
	}
	if len(sum.Channels) <= sum.Slots {
		t.Errorf("%d channels for %d hardware slots, want more channels than slots", len(sum.Channels), sum.Slots)
	}
	hw, sw := 0, 0
	for _, c := range sum.Channels {
		if c.Sent < pushesPer(sum.Duration) && c.Name != resetChannel {
			t.Errorf("%s: %d pushes sent, want %d", c.Name, c.Sent, pushesPer(sum.Duration))
		}
		if c.Delivered != c.Sent {
			t.Errorf("%s: %d of %d pushes delivered", c.Name, c.Delivered, c.Sent)
		}
		if c.Acked != c.Delivered {
			t.Errorf("%s: server saw %d acks for %d deliveries", c.Name, c.Acked, c.Delivered)
		}
		switch c.Slot {
		case "hardware":
			hw++
			if c.Armed == 0 {
				t.Errorf("%s: hardware channel never armed in the NIC", c.Name)
			}
		case "software":
			sw++
		}
	}
	if hw != sum.Slots || sw != len(sum.Channels)-sum.Slots {
		t.Errorf("slots at the first sleep: %d hardware, %d software; want %d and %d", hw, sw, sum.Slots, len(sum.Channels)-sum.Slots)
	}
	// Hardware keep-alives ran, were answered in the NIC, and woke
	// nobody.
	if sum.KeepAlivesSent == 0 || sum.RepliesAbsorbed == 0 {
		t.Errorf("NIC keep-alives: %d sent, %d replies absorbed; want both > 0", sum.KeepAlivesSent, sum.RepliesAbsorbed)
	}
	if n := sum.HostWakes[host.WakeKeepAliveTimeout.String()]; n != 0 {
		t.Errorf("%d host wakes for keep-alive timeouts", n)
	}
	if n := sum.NICWakes["keep-alive-timeout"]; n != 0 {
		t.Errorf("%d NIC wakes for keep-alive timeouts", n)
	}
	if len(sum.Unexplained) != 0 {
		t.Errorf("NIC wakes no push or reset explains: %q", sum.Unexplained)
	}
	if sum.PingsAnswered == 0 {
		t.Errorf("no server Ping answered by the NIC")
	}
	if sum.HostWakes[host.WakeHardwarePush.String()] == 0 {
		t.Errorf("host wakes %v: want hardware-push wakes", sum.HostWakes)
	}
	for _, c := range sum.Channels {
		if want := map[bool]int{true: 1}[c.Name == resetChannel]; c.Resets != want {
			t.Errorf("%s: %d resets, want %d", c.Name, c.Resets, want)
		}
	}
	if sum.EnergyMJ <= 0 || sum.EnergyMJ >= sum.SoftwareOnlyMJ {
		t.Errorf("energy %.0f mJ vs all-software %.0f mJ: want less than all-software", sum.EnergyMJ, sum.SoftwareOnlyMJ)
	}

	// The pcaps, read independently of the demo.
	for _, c := range []struct {
		path string
		n    uint64
	}{{filepath.Join(out, WirePcapName), sum.WireFrames}, {filepath.Join(out, WakePcapName), sum.WakePackets}} {
		n, tcp := readPcap(t, c.path)
		if n == 0 || uint64(n) != c.n {
			t.Errorf("%s: %d frames, summary says %d; want > 0 and equal", c.path, n, c.n)
		}
		if tcp == 0 {
			t.Errorf("%s: no TCP segment among %d frames", c.path, n)
		}
	}
	// At loss 0 the wire is FIFO: nothing reordered, lost or repeated.
	checkFaithfulWire(t, filepath.Join(out, WirePcapName))
	text := buf.String()
	checkTimeline(t, text)
	for _, want := range []string{"summary:", "host wakes:", "energy:", out, "all ", "pushes delivered"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	checkGoroutines(t, before)
}

// readPcap parses path with pcapgo and gopacket and returns its frames
// and how many of them are TCP segments.
func readPcap(t *testing.T, path string) (frames, tcp int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for {
		data, _, err := rd.ReadPacketData()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("%s: frame %d: %v", path, frames+1, err)
			}
			return frames, tcp
		}
		frames++
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.NoCopy)
		if p.Layer(layers.LayerTypeTCP) != nil {
			tcp++
		}
	}
}

// checkGoroutines waits until the goroutines Run started are gone.
func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Errorf("goroutines: %d before Run, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
			return
		}
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond)
	}
}
