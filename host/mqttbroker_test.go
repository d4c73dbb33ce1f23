package host

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
)

// testBroker is a minimal in-process MQTT broker for the host's tests
// (3.1.1 and 5.0): it accepts CONNECT, answers SUBSCRIBE with the QoS
// asked, PINGREQ with PINGRESP, records what clients sent, and publishes
// to a client on demand. The real broker's proof (mosquitto) is in the
// command's end-to-end tests.
type testBroker struct {
	t  testing.TB
	ln net.Listener
	// ServerKeepAlive, when ≥ 0, is sent in an MQTT 5 CONNACK.
	serverKeepAlive int
	// rejectCode, when not 0, refuses every CONNECT with it.
	rejectCode byte

	wg sync.WaitGroup

	mu          sync.Mutex
	conns       []*brokerConn
	connects    []brokerConnect
	pingreqs    int
	pubacks     []uint16
	disconnects int
	changed     chan struct{}
}

// brokerConnect is what a CONNECT said.
type brokerConnect struct {
	Version            byte
	ClientID           string
	KeepAlive          uint16
	Clean              bool
	Username, Password string
	Filters            []string
	QoS                []byte
}

type brokerConn struct {
	b       *testBroker
	c       net.Conn
	version byte
	wmu     sync.Mutex

	// sent and recv are the stream bytes (guarded by b.mu).
	sent, recv []byte
}

// recording reads from the connection and records into recv.
type recording struct{ bc *brokerConn }

func (r recording) Read(p []byte) (int, error) {
	n, err := r.bc.c.Read(p)
	r.bc.b.mu.Lock()
	r.bc.recv = append(r.bc.recv, p[:max(n, 0)]...)
	r.bc.b.mu.Unlock()
	return n, err
}

// streams returns copies of what the connection sent and received.
func (bc *brokerConn) streams() (sent, recv []byte) {
	bc.b.mu.Lock()
	defer bc.b.mu.Unlock()
	return append([]byte(nil), bc.sent...), append([]byte(nil), bc.recv...)
}

// newTestBroker serves on ln (wrapped in TLS when cfg is not nil).
func newTestBroker(t testing.TB, ln net.Listener, cfg *tls.Config) *testBroker {
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	b := &testBroker{t: t, ln: ln, serverKeepAlive: -1, changed: make(chan struct{})}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			bc := &brokerConn{b: b, c: c}
			b.mu.Lock()
			b.conns = append(b.conns, bc)
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer c.Close()
				if err := bc.serve(); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
					b.t.Logf("test broker: %v", err)
				}
			}()
		}
	}()
	t.Cleanup(b.close)
	return b
}

func (b *testBroker) addr() *net.TCPAddr { return b.ln.Addr().(*net.TCPAddr) }

func (b *testBroker) close() {
	b.ln.Close()
	b.mu.Lock()
	for _, c := range b.conns {
		c.c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *testBroker) notify() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// wait blocks until cond (run with b.mu held) holds or done closes.
func (b *testBroker) wait(done <-chan struct{}, cond func(b *testBroker) bool) error {
	for {
		b.mu.Lock()
		ok, ch := cond(b), b.changed
		b.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-done:
			return errors.New("test broker: condition not met in time")
		}
	}
}

// conn returns the i-th accepted connection.
func (b *testBroker) conn(i int) *brokerConn {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.conns[i]
}

func (bc *brokerConn) write(p []byte) error {
	bc.wmu.Lock()
	defer bc.wmu.Unlock()
	n, err := bc.c.Write(p)
	bc.b.mu.Lock()
	bc.sent = append(bc.sent, p[:n]...)
	bc.b.mu.Unlock()
	return err
}

// publish sends a PUBLISH to the client.
func (bc *brokerConn) publish(topic string, payload []byte, qos byte, id uint16) error {
	return bc.write(appendPublish(nil, topic, payload, qos, id, bc.version))
}

func (bc *brokerConn) serve() error {
	b := bc.b
	rd := mqttReader{br: bufio.NewReader(recording{bc})}
	for {
		hdr, body, err := rd.next()
		if err != nil {
			return err
		}
		c := cursor{b: body}
		switch hdr >> 4 {
		case mqttCONNECT:
			var cn brokerConnect
			if name := string(c.str("protocol name")); name != "MQTT" {
				return fmt.Errorf("protocol name %q", name)
			}
			cn.Version = c.u8("level")
			bc.version = cn.Version
			flags := c.u8("flags")
			cn.Clean = flags&2 != 0
			cn.KeepAlive = c.u16("keep alive")
			if cn.Version == 5 {
				var p mqttPacket
				c.props(&p)
			}
			cn.ClientID = string(c.str("client id"))
			if flags&0x80 != 0 {
				cn.Username = string(c.str("username"))
			}
			if flags&0x40 != 0 {
				cn.Password = string(c.bin("password"))
			}
			if c.err != nil {
				return c.err
			}
			b.mu.Lock()
			b.connects = append(b.connects, cn)
			b.notify()
			b.mu.Unlock()
			ack := []byte{0, b.rejectCode}
			if cn.Version == 5 {
				var props []byte
				if b.serverKeepAlive >= 0 {
					props = binary.BigEndian.AppendUint16([]byte{propServerKeepAlive}, uint16(b.serverKeepAlive))
				}
				if cn.ClientID == "" {
					props = appendString(append(props, propAssignedClientID), "auto-1")
				}
				ack = append(appendVarint(ack, len(props)), props...)
			}
			if err := bc.write(appendPacket(nil, mqttCONNACK<<4, ack)); err != nil {
				return err
			}
			if b.rejectCode != 0 {
				return nil
			}
		case mqttSUBSCRIBE:
			id := c.u16("packet id")
			if bc.version == 5 {
				var p mqttPacket
				c.props(&p)
			}
			var filters []string
			var qos []byte
			for len(c.b) > 0 && c.err == nil {
				filters = append(filters, string(c.str("filter")))
				qos = append(qos, c.u8("options")&3)
			}
			if c.err != nil {
				return c.err
			}
			b.mu.Lock()
			b.connects[len(b.connects)-1].Filters = filters
			b.connects[len(b.connects)-1].QoS = qos
			b.notify()
			b.mu.Unlock()
			ack := binary.BigEndian.AppendUint16(nil, id)
			if bc.version == 5 {
				ack = append(ack, 0)
			}
			if err := bc.write(appendPacket(nil, mqttSUBACK<<4, append(ack, qos...))); err != nil {
				return err
			}
		case mqttPINGREQ:
			b.mu.Lock()
			b.pingreqs++
			b.notify()
			b.mu.Unlock()
			if err := bc.write(mqttPingresp); err != nil {
				return err
			}
		case mqttPUBACK:
			id := c.u16("packet id")
			b.mu.Lock()
			b.pubacks = append(b.pubacks, id)
			b.notify()
			b.mu.Unlock()
		case mqttDISCONNECT:
			b.mu.Lock()
			b.disconnects++
			b.notify()
			b.mu.Unlock()
			return nil
		default:
			return fmt.Errorf("test broker: packet type %d", hdr>>4)
		}
	}
}
