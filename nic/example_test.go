package nic_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/standbynic/standbynic/nic"
	"github.com/standbynic/standbynic/nic/porttest"
	"github.com/standbynic/standbynic/offload"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// startNIC runs what `standbynic nic` runs, on in-memory ports: a device
// and its control server on a Unix socket in a temporary directory. It
// returns the socket's path and a function that stops everything.
func startNIC() (socket string, stop func()) {
	wire, _ := porttest.Pipe() // the wire port and its far end (the network)
	host, _ := porttest.Pipe() // the host port and its far end (the host's stack)
	dev, err := nic.New(&nic.Config{
		Wire: wire, Host: host,
		MAC:   [6]byte{0x02, 0, 0, 0, 0, 0x02},
		Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.2")},
	})
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "standbynic-example")
	if err != nil {
		log.Fatal(err)
	}
	socket = filepath.Join(dir, "nic.sock")
	// Root controls the device; so does the example's own group when it
	// runs as another user (a daemon names its control group instead).
	srv := nic.NewControlServer(dev, &nic.ControlConfig{Group: os.Getgid(), TrustPeerGroups: true})
	if err := srv.ListenUnix(socket, 0o660, -1); err != nil {
		log.Fatal(err)
	}
	return socket, func() {
		srv.Close()
		dev.Close()
		os.RemoveAll(dir)
	}
}

// exampleSlot is a slot for a connection the host hands over: its
// endpoints, the keep-alive to send (a TCP probe every 30 s) and the TCP
// state at the hand-over.
func exampleSlot() nic.SlotConfig {
	local := netip.MustParseAddrPort("198.18.0.2:40000")
	remote := netip.MustParseAddrPort("198.18.0.1:443")
	return nic.SlotConfig{
		Pattern: wp.TCPConn{Local: local, Remote: remote},
		Spec:    offload.Spec{Kind: offload.KindTCPProbe, Interval: 30 * time.Second, RetryInterval: time.Second, RetryCount: 3},
		Snapshot: offload.Snapshot{
			LocalMAC: [6]byte{0x02, 0, 0, 0, 0, 0x02}, RemoteMAC: [6]byte{0x02, 0, 0, 0, 0, 0x01},
			Local: local, Remote: remote,
			SndNxt: 1000, RcvNxt: 5000, SndWnd: 65535, RcvWnd: 65535, TTL: 64, MSS: 1460,
		},
		Owner: "mail",
	}
}

// DialControl connects to a NIC daemon's control socket; the client's
// methods are the endpoints of docs/control-api.md.
func ExampleDialControl() {
	socket, stop := startNIC()
	defer stop()

	cl, err := nic.DialControl(socket) // e.g. /run/standbynic/nic.sock
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	caps, err := cl.Capabilities(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("slots:", caps.Device.Slots)
	fmt.Println("max body:", caps.MaxBody, "bytes")
	st, err := cl.Power(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("power:", st)
	// Output:
	// slots: 8
	// max body: 65536 bytes
	// power: D0
}

// Arm hands a connection to the NIC; Disarm takes it back with the final
// report (the books of the bytes the NIC exchanged meanwhile).
func ExampleControlClient_Arm() {
	socket, stop := startNIC()
	defer stop()
	cl, err := nic.DialControl(socket)
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	id, err := cl.Arm(ctx, exampleSlot())
	if err != nil {
		log.Fatal(err)
	}
	st, err := cl.Slot(ctx, id)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("slot %d: %v, label %q, %v\n", st.ID, st.State, st.Label, st.Conn.Remote)

	// Arming the same connection again names the slot that has it.
	_, err = cl.Arm(ctx, exampleSlot())
	var ce *nic.ControlError
	if errors.As(err, &ce) {
		fmt.Println("again:", ce.Status, ce.Code)
	}

	rep, err := cl.Disarm(ctx, id)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("report: %v, SND.NXT %d, RCV.NXT %d\n", rep.State, rep.SndNxt, rep.RcvNxt)
	// Output:
	// slot 1: armed, label "mail", 198.18.0.1:443
	// again: 409 already_armed
	// report: armed, SND.NXT 1000, RCV.NXT 5000
}

// SetPower sleeps and wakes the NIC; a wake on the host's behalf is
// recorded like any other and streamed to StreamWakes' readers.
func ExampleControlClient_SetPower() {
	socket, stop := startNIC()
	defer stop()
	cl, err := nic.DialControl(socket)
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	stream, err := cl.StreamWakes(ctx, 0)
	if err != nil {
		log.Fatal(err)
	}
	defer stream.Close()
	for _, to := range []nic.PowerState{nic.D3, nic.Waking, nic.D0} {
		st, err := cl.SetPower(ctx, to)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("power:", st)
	}
	rec, err := stream.Next()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("wake %d: %v\n", rec.Seq, rec.Event.Reason)
	// Output:
	// power: D3
	// power: waking
	// power: D0
	// wake 1: host
}

// Remote is the NIC daemon with the method set a host runtime drives
// (host.NIC): `standbynic host --nic SOCKET` passes one where an
// in-process NIC passes a *nic.Device. With a lease, the NIC disarms the
// host's slots and returns to D0 by itself if the host stops renewing.
func ExampleRemote() {
	socket, stop := startNIC()
	defer stop()
	cl, err := nic.DialControl(socket)
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()

	r, err := cl.Remote(&nic.RemoteConfig{Lease: &nic.RemoteLease{Owner: "host", Period: 5 * time.Second}})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	fmt.Println("slots:", r.Capabilities().Slots)

	id, err := r.Arm(exampleSlot())
	if err != nil {
		log.Fatal(err)
	}
	if err := r.Sleep(); err != nil {
		log.Fatal(err)
	}
	if err := r.Wake(); err != nil { // the host woke by itself (a key press)
		log.Fatal(err)
	}
	ev := <-r.Wakes()
	fmt.Println("wake:", ev.Reason)
	if err := r.Resume(); err != nil {
		log.Fatal(err)
	}
	rep, err := r.Disarm(id)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("disarmed:", rep.State)
	// Output:
	// slots: 8
	// wake: host
	// disarmed: armed
}
