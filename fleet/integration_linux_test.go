package fleet_test

import (
	"context"
	"net"
	"net/netip"
	"regexp"
	"runtime"
	"testing"
	"time"

	"github.com/standbynic/standbynic/fleet"
	"github.com/standbynic/standbynic/internal/netlab"
	"github.com/standbynic/standbynic/internal/peers"
	"github.com/standbynic/standbynic/internal/pushserver"
)

// TestIntegrationFleetMosquitto runs 200 devices × 2 channels against a
// real mosquitto (Debian package mosquitto) in a lab namespace, each
// device from its own 127.1.x.y address: all on hardware slots, then all
// software. No keep-alive wakes a host with hardware slots, the broker
// holds every connection to the end, no push is lost, and a device costs
// at most 16 KiB of the process's heap and stacks.
func TestIntegrationFleetMosquitto(t *testing.T) {
	lab := netlab.NewForTest(t, nil)
	broker := peers.StartMosquitto(t, lab, netlab.Srv, peers.MosquittoConfig{Addr: netip.MustParseAddr("127.0.0.1"), Port: 18830})
	dial := func(ctx context.Context, laddr netip.Addr, raddr netip.AddrPort) (net.Conn, error) {
		var c net.Conn
		err := lab.Do(netlab.Srv, func() error {
			d := net.Dialer{}
			if laddr.IsValid() {
				d.LocalAddr = &net.TCPAddr{IP: laddr.AsSlice()}
			}
			var err error
			c, err = d.DialContext(ctx, "tcp", raddr.String())
			return err
		})
		return c, err
	}
	goroutines := runtime.NumGoroutine()
	run := func(t *testing.T, slots int) *fleet.Report {
		b := fleet.DefaultBehaviour()
		b.Channels = 2
		b.KeepAliveMin, b.KeepAliveMax = 2*time.Second, 5*time.Second
		b.PushEvery = 3 * time.Second
		b.HardwareSlotsMin, b.HardwareSlotsMax = slots, slots
		b.MaintenanceEvery, b.MaintenanceFor = 8*time.Second, 500*time.Millisecond
		e, err := fleet.New(&fleet.Config{
			Devices: 200, Seed: 3, Behaviour: b, Duration: 12 * time.Second,
			Broker: broker.Addr, Sources: netip.MustParsePrefix("127.1.0.0/16"), Dial: dial,
			ConnectWorkers: 16, Timeout: 30 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		r, err := e.Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c := r.Counters
		if c.ChannelsConnected != 400 || c.ProbesReceived != 400 || c.Disconnects != 0 || c.ProtocolErrors != 0 || c.WriteErrors != 0 {
			t.Errorf("connected %d, probes back %d, disconnects %d, protocol errors %d, write errors %d; want 400, 400, 0, 0, 0",
				c.ChannelsConnected, c.ProbesReceived, c.Disconnects, c.ProtocolErrors, c.WriteErrors)
		}
		if c.Published == 0 || r.Lost() != 0 {
			t.Errorf("published %d, lost %d; want > 0, 0", c.Published, r.Lost())
		}
		sent := c.KeepAlivesNIC + c.KeepAlivesHost
		if sent == 0 || c.KeepAliveAnswers+400 < sent {
			t.Errorf("keep-alives sent %d, answered %d", sent, c.KeepAliveAnswers)
		}
		if b := r.BytesPerDevice(); b > 16<<10 {
			t.Errorf("%.0f B per device, budget 16 KiB", b)
		}
		t.Logf("slots %d: wakes %v, keep-alives nic %d host %d, pushes %d, p50 %v p99 %v, %.0f B/device",
			slots, c.Wakes, c.KeepAlivesNIC, c.KeepAlivesHost, c.Published, r.Latency.Quantile(0.5), r.Latency.Quantile(0.99), r.BytesPerDevice())
		return r
	}
	var hw, sw *fleet.Report
	t.Run("hardware", func(t *testing.T) {
		hw = run(t, 2)
		if n := hw.Counters.Wakes[fleet.WakeKeepAlive]; n != 0 || hw.Counters.KeepAlivesNIC == 0 {
			t.Errorf("keep-alive wakes %d, NIC keep-alives %d; want 0, > 0", n, hw.Counters.KeepAlivesNIC)
		}
	})
	t.Run("software", func(t *testing.T) {
		sw = run(t, 0)
		if n := sw.Counters.Wakes[fleet.WakeKeepAlive]; n == 0 || sw.Counters.KeepAlivesNIC != 0 {
			t.Errorf("keep-alive wakes %d, NIC keep-alives %d; want > 0, 0", n, sw.Counters.KeepAlivesNIC)
		}
	})
	if lines := broker.Log.Count(regexp.MustCompile(`has exceeded timeout`)); lines != 0 {
		t.Errorf("mosquitto timed out %d clients", lines)
	}
	// Every reader and worker is gone once Run returned.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > goroutines+2 && time.Now().Before(deadline) {
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond) // polling a count with a deadline, not waiting for an event
	}
	if n := runtime.NumGoroutine(); n > goroutines+2 {
		t.Errorf("%d goroutines after the runs, %d before", n, goroutines)
	}
}

// TestIntegrationFleetPushServer runs 100 devices × 2 line channels
// against the reference push server (internal/pushserver) in a lab
// namespace, pushes posted to its HTTP API and acknowledged: no push lost
// or refused, every connection live at the end, no keep-alive wake with
// hardware slots.
func TestIntegrationFleetPushServer(t *testing.T) {
	lab := netlab.NewForTest(t, nil)
	var srv *pushserver.Server
	if err := lab.Do(netlab.Srv, func() error {
		var err error
		srv, err = pushserver.New(&pushserver.Config{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	dial := func(ctx context.Context, laddr netip.Addr, raddr netip.AddrPort) (net.Conn, error) {
		var c net.Conn
		err := lab.Do(netlab.Srv, func() error {
			d := net.Dialer{}
			if laddr.IsValid() {
				d.LocalAddr = &net.TCPAddr{IP: laddr.AsSlice()}
			}
			var err error
			c, err = d.DialContext(ctx, "tcp", raddr.String())
			return err
		})
		return c, err
	}
	b := fleet.DefaultBehaviour()
	b.KeepAliveMin, b.KeepAliveMax = 2*time.Second, 4*time.Second
	b.PushEvery = 2 * time.Second
	b.HardwareSlotsMin, b.HardwareSlotsMax = 2, 2
	e, err := fleet.New(&fleet.Config{
		Devices: 100, Seed: 4, Behaviour: b, Duration: 8 * time.Second, Protocol: fleet.ProtocolLine,
		Broker: srv.TCPAddr().AddrPort(), PushAPI: srv.HTTPAddr().AddrPort(),
		Sources: netip.MustParsePrefix("127.2.0.0/16"), Dial: dial, ConnectWorkers: 16, Timeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := e.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := r.Counters
	if c.ChannelsConnected != 200 || c.ProbesReceived != 200 || c.Disconnects != 0 || c.ProtocolErrors != 0 || c.PushesRefused != 0 {
		t.Errorf("connected %d, probes back %d, disconnects %d, protocol errors %d, refused %d; want 200, 200, 0, 0, 0",
			c.ChannelsConnected, c.ProbesReceived, c.Disconnects, c.ProtocolErrors, c.PushesRefused)
	}
	if c.Published == 0 || r.Lost() != 0 || c.Wakes[fleet.WakeKeepAlive] != 0 || c.KeepAlivesNIC == 0 {
		t.Errorf("published %d, lost %d, keep-alive wakes %d, NIC keep-alives %d; want > 0, 0, 0, > 0",
			c.Published, r.Lost(), c.Wakes[fleet.WakeKeepAlive], c.KeepAlivesNIC)
	}
	// The server saw one connection, the keep-alives and an
	// acknowledgment of every push it sent.
	ch, ok := srv.Channel("sbn-4-0-0")
	if !ok || ch.Connections != 1 || len(ch.Lines) == 0 || len(ch.Acked) != len(ch.Pushed) {
		t.Errorf("push server's channel sbn-4-0-0: %d connections, lines %q, %d pushed, %d acked (found %v); want 1, keep-alives, all acked",
			ch.Connections, ch.Lines, len(ch.Pushed), len(ch.Acked), ok)
	}
	t.Logf("line: wakes %v, keep-alives nic %d host %d, pushes %d, p50 %v, %.0f B/device",
		c.Wakes, c.KeepAlivesNIC, c.KeepAlivesHost, c.Published, r.Latency.Quantile(0.5), r.BytesPerDevice())
}
