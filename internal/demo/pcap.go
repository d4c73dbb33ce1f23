package demo

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// countPcap reads the pcap file at path and returns its number of
// packets; it fails on a file that is not an Ethernet pcap.
func countPcap(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	rd, err := pcapgo.NewReader(f)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	if lt := rd.LinkType(); lt != layers.LinkTypeEthernet {
		return 0, fmt.Errorf("%s: link type %v, want Ethernet", path, lt)
	}
	var n uint64
	for {
		_, _, err := rd.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("%s: packet %d: %w", path, n+1, err)
		}
		n++
	}
}
