package bench

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	wp "github.com/standbynic/standbynic/wakepattern"
)

// Addresses of the frames the scenarios build: the lab's (198.18.0.0/15,
// the benchmarking range).
var (
	hostIP = netip.MustParseAddr("198.18.0.2")
	srvIP  = netip.MustParseAddr("198.18.0.1")
	// Locally administered MACs for frames that never leave a lab.
	benchSrcMAC = [6]byte{0x02, 0x5b, 0x00, 0x00, 0x00, 0x01}
	benchDstMAC = [6]byte{0x02, 0x5b, 0x00, 0x00, 0x00, 0x02}
)

// segment describes one TCP segment to build.
type segment struct {
	srcMAC, dstMAC [6]byte
	src, dst       netip.AddrPort
	seq, ack       uint32
	flags          uint8 // wakepattern TCPFlag* bits; ACK when 0
	window         uint16
	ts             bool // add NOP NOP TS
	payload        []byte
}

// tcpFrame builds an untagged IPv4 TCP frame with valid checksums.
func tcpFrame(sg segment) ([]byte, error) {
	if !sg.src.Addr().Is4() || !sg.dst.Addr().Is4() {
		return nil, fmt.Errorf("tcp frame: IPv4 addresses only, got %v → %v", sg.src, sg.dst)
	}
	flags := sg.flags
	if flags == 0 {
		flags = wp.TCPFlagACK
	}
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(sg.srcMAC[:]), DstMAC: net.HardwareAddr(sg.dstMAC[:]), EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, Flags: layers.IPv4DontFragment,
		SrcIP: sg.src.Addr().AsSlice(), DstIP: sg.dst.Addr().AsSlice()}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sg.src.Port()), DstPort: layers.TCPPort(sg.dst.Port()), Seq: sg.seq, Ack: sg.ack,
		Window: sg.window,
		FIN:    flags&wp.TCPFlagFIN != 0, SYN: flags&wp.TCPFlagSYN != 0, RST: flags&wp.TCPFlagRST != 0,
		PSH: flags&wp.TCPFlagPSH != 0, ACK: flags&wp.TCPFlagACK != 0}
	if sg.ts {
		tcp.Options = []layers.TCPOption{
			{OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: []byte{0, 0, 0, 1, 0, 0, 0, 2}},
		}
	}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		return nil, fmt.Errorf("tcp frame: %w", err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, tcp, gopacket.Payload(sg.payload)); err != nil {
		return nil, fmt.Errorf("tcp frame: %w", err)
	}
	return append([]byte(nil), buf.Bytes()...), nil
}

// connSet is n IPv4 connection patterns and frames that match them.
type connSet struct {
	n        int
	patterns []wp.Pattern
	// frames are keep-alive ACKs with timestamps from the remote end,
	// each matching one pattern, spread over the set so lookups do not
	// hit one cached entry.
	frames [][]byte
}

// connSetFrames is the number of distinct frames of a connSet.
const connSetFrames = 64

// newConnSet returns n connection patterns (local 198.18.0.2 on distinct
// ports, remotes spread over 198.18.0.0/15 on port 443) and frames from
// the remotes.
func newConnSet(n int) (*connSet, error) {
	cs := &connSet{n: n, patterns: make([]wp.Pattern, n)}
	for i := range cs.patterns {
		remote := netip.AddrFrom4([4]byte{198, 18 + byte(i>>16&1), byte(i >> 8), byte(i)})
		if i&0xffff < 3 {
			remote = netip.AddrFrom4([4]byte{198, 19, 255, byte(i + 10)}) // keep clear of 198.18.0.{0,1,2}
		}
		cs.patterns[i] = wp.Pattern{ID: uint32(i + 1), Kind: wp.KindTCPConn, Conn: wp.TCPConn{
			Local:  netip.AddrPortFrom(hostIP, uint16(1024+i%60000)),
			Remote: netip.AddrPortFrom(remote, 443),
		}}
	}
	for j := range connSetFrames {
		c := cs.patterns[(j*7919)%n].Conn
		f, err := tcpFrame(segment{srcMAC: benchSrcMAC, dstMAC: benchDstMAC, src: c.Remote, dst: c.Local, seq: 1000, ack: 2000, window: 1000, ts: true})
		if err != nil {
			return nil, err
		}
		cs.frames = append(cs.frames, f)
	}
	return cs, nil
}
