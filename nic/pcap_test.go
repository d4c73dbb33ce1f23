package nic

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

func TestPcapSinkWritesReadableNanosecondPcap(t *testing.T) {
	var cnt counters
	var buf bytes.Buffer
	s := newPcapSink(&buf, "wake", 128, 4, &cnt, cPcapWakeFrames, slog.New(slog.DiscardHandler))
	var sent [][]byte
	for i := range 3 {
		f := bytes.Repeat([]byte{byte(i + 1)}, 60+i*100)
		sent = append(sent, f)
		s.capture(f)
	}
	s.close()
	s.close() // idempotent
	r, err := pcapgo.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != layers.LinkTypeEthernet || r.Snaplen() != 128 {
		t.Errorf("link type %v snaplen %d, want Ethernet 128", r.LinkType(), r.Snaplen())
	}
	for i, f := range sent {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		want := f[:min(len(f), 128)]
		if !bytes.Equal(data, want) || ci.Length != len(f) {
			t.Errorf("record %d: %d bytes (orig %d), want %d (orig %d)", i, len(data), ci.Length, len(want), len(f))
		}
	}
	if _, _, err := r.ReadPacketData(); err != io.EOF {
		t.Errorf("after the last record: %v, want EOF", err)
	}
	if got := cnt.get(cPcapWakeFrames); got != 3 {
		t.Errorf("pcap_wake_frames = %d, want 3", got)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestPcapSinkErrorsCounted(t *testing.T) {
	var cnt counters
	s := newPcapSink(failWriter{}, "wire", 2048, 4, &cnt, cPcapWireFrames, slog.New(slog.DiscardHandler))
	s.capture(make([]byte, 60))
	s.close()
	if got := cnt.get(cPcapErrors); got != 2 { // header + one record
		t.Errorf("pcap_errors = %d, want 2", got)
	}
	if got := cnt.get(cPcapWireFrames); got != 0 {
		t.Errorf("pcap_wire_frames = %d, want 0", got)
	}
}
