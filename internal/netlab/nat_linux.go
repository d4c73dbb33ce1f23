//go:build linux

package netlab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// NATTable is the nftables table Masquerade loads in the router namespace.
const NATTable = "standbynic_nat"

// conntrackEstablished is the per-namespace sysctl of the TCP established
// timeout, in seconds.
const conntrackEstablished = "net/netfilter/nf_conntrack_tcp_timeout_established"

// ErrNoNft is wrapped when the nft command (Debian package nftables) is
// not installed.
var ErrNoNft = errors.New("nft not found in PATH: install the Debian package nftables")

// Masquerade turns the router namespace into a NAT: an nftables table
// (inet family, so IPv4 and IPv6) masquerades everything leaving on rtr1,
// so srv sees the host's connections come from 198.18.1.1 and
// 2001:2:0:1::1. established, when not 0, becomes the namespace's
// conntrack TCP established-timeout (1 s – 5 days, whole seconds): a
// connection idle that long is forgotten and its next segment from srv is
// dropped — the "NAT drops idle flows" middlebox. The sysctl belongs to the
// router namespace alone. It needs the nft command (package nftables).
func (l *Lab) Masquerade(established time.Duration) error {
	if !l.router {
		return fmt.Errorf("netlab: masquerade: lab %s has no router", l.ID)
	}
	if established != 0 && (established < time.Second || established > MaxNATTimeout || established%time.Second != 0) {
		return fmt.Errorf("netlab: masquerade: established timeout %v: want whole seconds in 1s–%v", established, MaxNATTimeout)
	}
	nft, err := exec.LookPath("nft")
	if err != nil {
		return fmt.Errorf("netlab: masquerade: %w", ErrNoNft)
	}
	rules := "table inet " + NATTable + " {\n" +
		"\tchain postrouting {\n" +
		"\t\ttype nat hook postrouting priority srcnat; policy accept;\n" +
		"\t\toifname \"" + RouterSrvLink + "\" masquerade\n" +
		"\t}\n" +
		"}\n"
	err = l.Do(Router, func() error {
		// The child is forked from this thread, in the router namespace.
		cmd := exec.Command(nft, "-f", "-")
		cmd.Stdin = strings.NewReader(rules)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("nft -f: %w: %s", err, bytes.TrimSpace(out.Bytes()))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("netlab: masquerade: %w", err)
	}
	if established != 0 {
		if err := l.sysctl(Router, conntrackEstablished, strconv.Itoa(int(established/time.Second))); err != nil {
			return fmt.Errorf("netlab: conntrack established timeout: %w", err)
		}
	}
	return nil
}

// NATTimeout returns the router namespace's conntrack TCP
// established-timeout.
func (l *Lab) NATTimeout() (time.Duration, error) {
	var d time.Duration
	err := l.Do(Router, func() error {
		b, err := os.ReadFile("/proc/sys/" + conntrackEstablished)
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return fmt.Errorf("%s: %w", conntrackEstablished, err)
		}
		d = time.Duration(n) * time.Second
		return nil
	})
	return d, err
}
