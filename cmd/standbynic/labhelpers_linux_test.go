package main

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/standbynic/standbynic/internal/netlab"
	"github.com/standbynic/standbynic/internal/pushserver"
)

// startLabPushServer starts the reference push server in lab's srv
// namespace on ephemeral ports of the srv address (TCP, WebSocket, HTTP)
// and closes it in t.Cleanup.
func startLabPushServer(t *testing.T, lab *netlab.Lab) *pushserver.Server {
	t.Helper()
	var srv *pushserver.Server
	any := netip.AddrPortFrom(lab.Addr.Srv4, 0).String()
	if err := lab.Do(netlab.Srv, func() error {
		var err error
		srv, err = pushserver.New(&pushserver.Config{TCPAddr: any, WSAddr: any, HTTPAddr: any})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// echoThroughNIC checks the NIC daemon is a bump in the wire: a TCP
// connection from the host namespace to an echo server in srv crosses it
// with msg intact both ways. stderr is the daemon's, shown on failure.
func echoThroughNIC(t *testing.T, ctx context.Context, lab *netlab.Lab, msg []byte, stderr interface{ String() string }) {
	t.Helper()
	ln, err := lab.ListenTCP(netlab.Srv, netip.AddrPortFrom(lab.Addr.Srv4, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		ln.SetDeadline(time.Now().Add(15 * time.Second))
		sc, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		io.Copy(sc, sc) // echo until the client closes
		accepted <- sc
	}()
	hc, err := lab.DialTCP(ctx, netlab.Host, ln.Addr().String())
	if err != nil {
		t.Fatalf("dial through the NIC: %v\nstderr:\n%s", err, stderr)
	}
	defer hc.Close()
	hc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := hc.Write(msg); err != nil {
		t.Fatal(err)
	}
	echo := make([]byte, len(msg))
	if _, err := io.ReadFull(hc, echo); err != nil || string(echo) != string(msg) {
		t.Fatalf("echo %q, %v", echo, err)
	}
	hc.CloseWrite()
	if sc := <-accepted; sc != nil {
		sc.Close()
	}
}
