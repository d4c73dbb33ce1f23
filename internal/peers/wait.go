//go:build linux

package peers

import (
	"context"
	"io/fs"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/standbynic/standbynic/internal/netlab"
)

func filepathStat(p string) (fs.FileInfo, error) { return os.Stat(p) }

// waitListening polls every 20 ms until a TCP connection to addr from ns
// succeeds; it fails t on the timeout or when p ends first.
func waitListening(t testing.TB, lab *netlab.Lab, ns netlab.Namespace, addr netip.AddrPort, p *Proc, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := lab.DialTCP(ctx, ns, addr.String())
		cancel()
		if err == nil {
			c.Close()
			return
		}
		if done, perr := p.Exited(); done {
			t.Fatalf("peers: %s exited (%v) before listening on %s; output:\n%s", p.Name, perr, addr, p.Output())
		}
		if time.Now().After(deadline) {
			t.Fatalf("peers: %s not listening on %s within %v: %v; output:\n%s", p.Name, addr, timeout, err, p.Output())
		}
		time.Sleep(20 * time.Millisecond) // a poll interval, bounded by the deadline
	}
}
