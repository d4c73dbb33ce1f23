package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/standbynic/standbynic/internal/netlab"
)

// The lab's state lives here: <name>.json, and <name>/ with the host's
// configuration and the NIC's control socket.
const labStateDir = "/run/standbynic/lab"

const (
	defaultLabName = "lab"
	// labDownGrace is how long lab down waits for the processes in a
	// lab's namespaces to end after SIGTERM before it sends SIGKILL.
	labDownGrace = 10 * time.Second
)

// Ports of the push server in a lab (the push-server command's defaults).
const (
	labPortTCP  = 7000
	labPortWS   = 7001
	labPortHTTP = 7002
)

// The lab's srv address without a router: the push server's default
// listen address and the example host configuration's server.
var labSrv4 = netip.MustParseAddr("198.18.0.1")

// labState is <name>.json: what lab up built, for the other lab commands
// and for scripts.
type labState struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	Router  bool      `json:"router"`
	// NATTimeout is the router's conntrack established-timeout ("" with no
	// router; "kernel default" when not set).
	NATTimeout string `json:"nat_timeout,omitempty"`
	IPv6       bool   `json:"ipv6"`
	// Namespaces by role (srv, nic, host, rtr).
	Namespaces map[string]string `json:"namespaces"`
	Srv        []string          `json:"srv_addrs"`  // srv0's addresses
	Host       []string          `json:"host_addrs"` // host0's addresses
	HostMAC    string            `json:"host_mac"`
	Gateway    []string          `json:"gateway,omitempty"`
	// Dir holds host.json and the NIC's control socket.
	Dir string `json:"dir"`
	// Commands are the daemons' command lines, in the order to start them.
	Commands []labCommand `json:"commands"`
}

// labCommand is one daemon's command line in a lab.
type labCommand struct {
	Daemon string   `json:"daemon"` // push-server, nic, host
	Role   string   `json:"role"`   // the namespace it runs in
	Argv   []string `json:"argv"`   // the whole command: standbynic lab exec … -- standbynic …
}

var labRoles = []netlab.Namespace{netlab.Srv, netlab.NIC, netlab.Host, netlab.Router}

func runLab(ctx context.Context, stdout, stderr io.Writer, args []string) int {
	usage := func(w io.Writer) {
		fmt.Fprint(w, `usage: standbynic lab <up|down|status|exec> [flags]

Build and run the lab the tests and the demo use, for the daemons: network
namespaces srv | nic | host (and rtr with --router) joined by veth pairs, with
addresses from 198.18.0.0/15 and 2001:2::/48 only. The lab outlives the
command: its namespaces are mounted in /run/netns, its state is in
/run/standbynic/lab/NAME.json.

  standbynic lab up [--name NAME] [--router] [--nat-timeout D] [--ipv6]
  standbynic lab down NAME
  standbynic lab status [NAME]
  standbynic lab exec NAME ROLE -- COMMAND [ARG...]

Run 'standbynic lab <command> -h' for its flags.
`)
	}
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "up":
		return runLabUp(ctx, stdout, stderr, args[1:])
	case "down":
		return runLabDown(ctx, stdout, stderr, args[1:])
	case "status":
		return runLabStatus(stdout, stderr, args[1:])
	case "exec":
		return runLabExec(stderr, args[1:])
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "standbynic lab: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

// labFlags are lab up's validated flags.
type labFlags struct {
	name       string
	router     bool
	natTimeout time.Duration
	ipv6       bool
}

func parseLabUpFlags(stderr io.Writer, args []string) (*labFlags, int, bool) {
	fs := newFlagSet("lab up", stderr, "[--name NAME] [--router] [--nat-timeout D] [--ipv6]",
		`Build a lab: network namespaces sbn-NAME-srv, sbn-NAME-nic and sbn-NAME-host
joined by veth pairs (srv0 198.18.0.1 ⇄ wire0 [nic] hport0 ⇄ host0 198.18.0.2),
and print the command lines that run the push server, the NIC and the host in
it. With --router a namespace sbn-NAME-rtr between nic and srv masquerades the
host's connections (nftables; the nft command, Debian package nftables).
Remove it with 'standbynic lab down NAME'.`)
	f := &labFlags{}
	fs.StringVar(&f.name, "name", defaultLabName, fmt.Sprintf("`NAME` of the lab: 1–%d characters a–z, 0–9 and '-', starting with a letter", netlab.MaxNameLen))
	fs.BoolVar(&f.router, "router", false, "put a router namespace (rtr) doing NAT (nftables masquerade) between nic and srv")
	nat := newDurationFlag(fs, "nat-timeout", 0, time.Second, netlab.MaxNATTimeout, true,
		"the router's conntrack TCP established-timeout, whole seconds: a connection idle this long is forgotten by the NAT (needs --router; 0: the kernel's 5 days)")
	fs.BoolVar(&f.ipv6, "ipv6", false, "the printed command lines and the host's configuration use the IPv6 addresses (the lab has both families either way)")
	if code, done := parse(fs, args); done {
		return nil, code, true
	}
	f.natTimeout = *nat
	if err := netlab.CheckName(f.name); err != nil {
		return nil, usageError(fs, "-name: %v", err), true
	}
	if f.natTimeout != 0 && !f.router {
		return nil, usageError(fs, "-nat-timeout needs -router"), true
	}
	if f.natTimeout%time.Second != 0 {
		return nil, usageError(fs, "-nat-timeout %v: want whole seconds", f.natTimeout), true
	}
	return f, 0, false
}

func runLabUp(ctx context.Context, stdout, stderr io.Writer, args []string) int {
	f, code, done := parseLabUpFlags(stderr, args)
	if done {
		return code
	}
	st, err := labUp(ctx, f)
	if err != nil {
		fmt.Fprintf(stderr, "standbynic lab up: %v\n", err)
		return exitFailure
	}
	writeLabUp(stdout, st)
	return exitOK
}

// labPaths returns the state file and the state folder of lab name.
func labPaths(name string) (file, dir string) {
	return filepath.Join(labStateDir, name+".json"), filepath.Join(labStateDir, name)
}

// labUp builds the lab, writes its host configuration and state file,
// and lets go of it. On failure nothing it made is left.
func labUp(ctx context.Context, f *labFlags) (_ *labState, err error) {
	if err := netlab.Privileged(); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("needs CAP_SYS_ADMIN (network namespaces), CAP_NET_ADMIN and CAP_NET_RAW: run as root: %w", err)
		}
		return nil, err
	}
	file, dir := labPaths(f.name)
	if _, err := os.Stat(file); err == nil {
		return nil, fmt.Errorf("lab %q exists (%s); remove it with 'standbynic lab down %s'", f.name, file, f.name)
	}
	if err := os.MkdirAll(labStateDir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("lab %q exists (%s); remove it with 'standbynic lab down %s'", f.name, dir, f.name)
		}
		return nil, err
	}
	var l *netlab.Lab
	defer func() {
		if err != nil {
			if l != nil {
				err = errors.Join(err, l.Close())
			}
			os.RemoveAll(dir)
			os.Remove(file)
		}
	}()
	l, err = netlab.NewNamed(ctx, f.name, &netlab.Options{Router: f.router})
	if err != nil {
		return nil, err
	}
	st := &labState{Name: f.name, Created: time.Now().UTC().Truncate(time.Second), Router: f.router, IPv6: f.ipv6,
		Namespaces: map[string]string{}, Dir: dir}
	if f.router {
		if err := l.Masquerade(f.natTimeout); err != nil {
			return nil, err
		}
		d, err := l.NATTimeout()
		if err != nil {
			return nil, err
		}
		st.NATTimeout = d.String()
	}
	for _, r := range l.Namespaces() {
		st.Namespaces[r.String()] = l.NamespaceName(r)
	}
	a := l.Addr
	st.Srv = []string{netip.PrefixFrom(a.Srv4, a.Bits4).String(), netip.PrefixFrom(a.Srv6, a.Bits6).String()}
	st.Host = []string{netip.PrefixFrom(a.Host4, a.Bits4).String(), netip.PrefixFrom(a.Host6, a.Bits6).String()}
	if a.Gateway4.IsValid() {
		st.Gateway = []string{a.Gateway4.String(), a.Gateway6.String()}
	}
	hi, err := l.Interface(netlab.Host, netlab.HostLink)
	if err != nil {
		return nil, err
	}
	st.HostMAC = hi.HardwareAddr.String()
	cfg, err := labHostConfig(labServer(a, f.ipv6))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "host.json"), cfg, 0o644); err != nil {
		return nil, err
	}
	st.Commands = labCommands(st, a)
	if err := writeLabState(file, st); err != nil {
		return nil, err
	}
	l.Release()
	return st, nil
}

// labServer returns the address the lab's push server listens on.
func labServer(a netlab.Addresses, ipv6 bool) netip.Addr {
	if ipv6 {
		return a.Srv6
	}
	return a.Srv4
}

// labChannels are the channels of the lab's host configuration.
var labChannels = []string{"mail-push", "mail-sync", "chat"}

// labHostConfig returns the host configuration for a push server at srv:
// the example of docs/cli.md (cmd/standbynic/testdata/host.json) with the
// server's addresses. It is checked with the host command's own loader.
func labHostConfig(srv netip.Addr) ([]byte, error) {
	tcp := net.JoinHostPort(srv.String(), strconv.Itoa(labPortTCP))
	ws := "ws://" + net.JoinHostPort(srv.String(), strconv.Itoa(labPortWS)) + "/ws"
	cfg := fmt.Sprintf(`{
  "server": {
    "tcp": %q,
    "websocket": %q
  },
  "policy": {
    "interval_unit": "1s",
    "min_interval": 15,
    "max_interval": 3600,
    "app_hardware_quota": 2
  },
  "host": {
    "resume_latency": "50ms",
    "push_check_interval": "20s",
    "wake_hold": "1s",
    "power": {"awake_mw": 1000, "standby_mw": 15, "resume_mj": 200}
  },
  "apps": [
    {
      "name": "mail",
      "priority": 2,
      "channels": [
        {"id": "mail-push", "transport": "websocket", "slot": "hardware", "interval": "30s"},
        {"id": "mail-sync", "transport": "tcp", "slot": "software", "interval": "60s", "keepalive": "noop"}
      ]
    },
    {
      "name": "chat",
      "channels": [
        {"id": "chat", "transport": "tcp", "slot": "hardware", "interval": "20s", "priority": 5}
      ]
    }
  ]
}
`, tcp, ws)
	if _, err := loadHostConfig([]byte(cfg)); err != nil {
		return nil, fmt.Errorf("the lab's host configuration: %w", err)
	}
	return []byte(cfg), nil
}

// labProgram is how the printed command lines name this program: its
// absolute path, or "standbynic" when it runs from `go run`'s cache.
func labProgram() string {
	exe, err := os.Executable()
	if err != nil || strings.Contains(exe, "go-build") {
		return "standbynic"
	}
	return exe
}

// labCommands returns the daemons' command lines.
func labCommands(st *labState, a netlab.Addresses) []labCommand {
	prog := labProgram()
	srv := labServer(a, st.IPv6)
	in := func(role string, argv ...string) []string {
		return append([]string{prog, "lab", "exec", st.Name, role, "--", prog}, argv...)
	}
	ps := []string{"push-server"}
	if srv != labSrv4 {
		for _, p := range []struct {
			flag string
			port int
		}{{"--tcp", labPortTCP}, {"--ws", labPortWS}, {"--http", labPortHTTP}} {
			ps = append(ps, p.flag, net.JoinHostPort(srv.String(), strconv.Itoa(p.port)))
		}
	}
	for _, c := range labChannels {
		ps = append(ps, "--channel", c)
	}
	sock := filepath.Join(st.Dir, "nic.sock")
	return []labCommand{
		{"push-server", "srv", in("srv", ps...)},
		{"nic", "nic", in("nic", "nic", "--wire", netlab.WireLink, "--host", netlab.HostPortLink,
			"--host-mac", st.HostMAC, "--host-addr", a.Host4.String(), "--host-addr", a.Host6.String(), "--control", sock)},
		{"host", "host", in("host", "host", "--nic", sock, "--config", filepath.Join(st.Dir, "host.json"))},
	}
}

func writeLabState(file string, st *labState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

// readLabState reads lab name's state file.
func readLabState(name string) (*labState, error) {
	file, _ := labPaths(name)
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var st labState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if st.Name != name {
		return nil, fmt.Errorf("%s: names lab %q", file, st.Name)
	}
	return &st, nil
}

// shellQuote quotes s for a POSIX shell when it needs quoting.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@,+[]") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shellLine joins argv into one shell command line.
func shellLine(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

func writeLabUp(w io.Writer, st *labState) {
	file, _ := labPaths(st.Name)
	topo := "srv | nic | host"
	if st.Router {
		topo = "srv | rtr (NAT) | nic | host"
	}
	fmt.Fprintf(w, "lab %s is up: %s; state in %s\n\n", st.Name, topo, file)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  srv\t%s\t%s %s\n", st.Namespaces["srv"], netlab.SrvLink, strings.Join(st.Srv, ", "))
	if st.Router {
		fmt.Fprintf(tw, "  rtr\t%s\t%s %s/24 (host side), %s towards srv; masquerade, conntrack established-timeout %s\n",
			st.Namespaces["rtr"], netlab.RouterNICLink, st.Gateway[0], netlab.RouterSrvLink, st.NATTimeout)
	}
	fmt.Fprintf(tw, "  nic\t%s\t%s (to srv), %s (to host), no addresses\n", st.Namespaces["nic"], netlab.WireLink, netlab.HostPortLink)
	fmt.Fprintf(tw, "  host\t%s\t%s %s, MAC %s\n", st.Namespaces["host"], netlab.HostLink, strings.Join(st.Host, ", "), st.HostMAC)
	tw.Flush()
	fmt.Fprint(w, "\nStart the daemons in this order, each in its own terminal (the nic forwards\nnothing until it runs):\n\n")
	for _, c := range st.Commands {
		fmt.Fprintf(w, "  %s\n", shellLine(c.Argv))
	}
	srv := strings.Split(st.Srv[0], "/")[0]
	if st.IPv6 {
		srv = "[" + strings.Split(st.Srv[1], "/")[0] + "]"
	}
	api := fmt.Sprintf("http://%s:%d", srv, labPortHTTP)
	prog := labProgram()
	fmt.Fprintf(w, "\n('ip netns exec %s …' does what 'lab exec %s srv --' does.)\n\nPush to a channel and wait for the host's acknowledgment:\n\n", st.Namespaces["srv"], st.Name)
	fmt.Fprintf(w, "  %s lab exec %s srv -- curl -X POST --data hello '%s/push?channel=chat'\n", prog, st.Name, api)
	fmt.Fprintf(w, "  %s lab exec %s srv -- curl '%s/acks?channel=chat&wait=1&timeout=30s'\n", prog, st.Name, api)
	fmt.Fprintf(w, "\nRemove the lab and end the daemons still running in it:\n\n  %s lab down %s\n", prog, st.Name)
}

// labNameArg parses the one NAME argument of lab down and lab status.
func labNameArg(fs *cmdFlags, args []string, required bool) (string, int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(fs)
			return "", exitOK, true
		}
		fmt.Fprintf(fs.Output(), "Run '%s -h' for help.\n", fs.Name())
		return "", exitUsage, true
	}
	switch {
	case fs.NArg() == 0 && required:
		return "", usageError(fs, "NAME is required"), true
	case fs.NArg() == 0:
		return "", 0, false
	case fs.NArg() > 1:
		return "", usageError(fs, "unexpected argument %q", fs.Arg(1)), true
	}
	if err := netlab.CheckName(fs.Arg(0)); err != nil {
		return "", usageError(fs, "NAME: %v", err), true
	}
	return fs.Arg(0), 0, false
}

func runLabDown(ctx context.Context, stdout, stderr io.Writer, args []string) int {
	fs := newFlagSet("lab down", stderr, "NAME",
		fmt.Sprintf(`Remove the lab NAME: end every process still in its namespaces, one
namespace after the other (host, nic, rtr, srv; SIGTERM, then SIGKILL after
%v), delete the namespaces (the kernel removes their veths with them) and
its state in %s.`, labDownGrace, labStateDir))
	name, code, done := labNameArg(fs, args, true)
	if done {
		return code
	}
	file, dir := labPaths(name)
	_, ferr := os.Stat(file)
	_, derr := os.Stat(dir)
	if ferr != nil && derr != nil && !netlab.NamedExists(name) {
		fmt.Fprintf(stderr, "standbynic lab down: no lab %q (no %s, no namespace sbn-%s-*)\n", name, file, name)
		return exitFailure
	}
	pids, err := netlab.DeleteNamed(ctx, name, labDownGrace)
	for _, pid := range pids {
		fmt.Fprintf(stdout, "ended process %d\n", pid)
	}
	err = errors.Join(err, os.RemoveAll(dir))
	if rerr := os.Remove(file); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "standbynic lab down: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "lab %s removed\n", name)
	return exitOK
}

// labNames returns the labs with a state file or a mounted namespace
// named like a lab's, sorted.
func labNames() []string {
	seen := map[string]bool{}
	if ents, err := os.ReadDir(labStateDir); err == nil {
		for _, e := range ents {
			if n, ok := strings.CutSuffix(e.Name(), ".json"); ok && netlab.CheckName(n) == nil {
				seen[n] = true
			}
		}
	}
	if ents, err := os.ReadDir(filepath.Dir(netlab.NamedNamespacePath("x", netlab.Srv))); err == nil {
		for _, e := range ents {
			rest, ok := strings.CutPrefix(e.Name(), "sbn-")
			if !ok {
				continue
			}
			for _, r := range labRoles {
				if n, ok := strings.CutSuffix(rest, "-"+r.String()); ok && netlab.CheckName(n) == nil {
					seen[n] = true
				}
			}
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func runLabStatus(stdout, stderr io.Writer, args []string) int {
	fs := newFlagSet("lab status", stderr, "[NAME]",
		`List the labs (or the lab NAME): their namespaces, whether each is mounted,
and the processes running in it.`)
	name, code, done := labNameArg(fs, args, false)
	if done {
		return code
	}
	names := labNames()
	if name != "" {
		if !slices.Contains(names, name) {
			fmt.Fprintf(stderr, "standbynic lab status: no lab %q\n", name)
			return exitFailure
		}
		names = []string{name}
	}
	if len(names) == 0 {
		fmt.Fprintln(stdout, "no labs")
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LAB\tROLE\tNAMESPACE\tSTATE\tPROCESSES")
	for _, n := range names {
		st, err := readLabState(n)
		roles := []netlab.Namespace{netlab.Srv, netlab.NIC, netlab.Host}
		if err != nil || st.Router {
			roles = labRoles
		}
		for _, r := range roles {
			ns := netlab.NamedNamespace(n, r)
			state := "mounted"
			procs := "-"
			if pids, perr := netlab.NamespacePIDs(netlab.NamedNamespacePath(n, r)); perr != nil {
				if err == nil && !(r == netlab.Router && !st.Router) {
					state = "missing"
				} else if err != nil {
					continue // no state file: show what exists
				}
			} else if len(pids) > 0 {
				ps := make([]string, len(pids))
				for i, pid := range pids {
					ps[i] = fmt.Sprintf("%d %s", pid, procName(pid))
				}
				procs = strings.Join(ps, ", ")
			}
			if err != nil {
				state += " (no state file; 'lab down " + n + "' removes it)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n, r, ns, state, procs)
		}
	}
	tw.Flush()
	return exitOK
}

// procName returns the command name of pid ("?" if it is gone).
func procName(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

func runLabExec(stderr io.Writer, args []string) int {
	fs := newFlagSet("lab exec", stderr, "NAME ROLE -- COMMAND [ARG...]",
		`Run COMMAND in the network namespace ROLE (srv, nic, host, or rtr in a lab
with a router) of the lab NAME, as 'ip netns exec sbn-NAME-ROLE COMMAND' does:
the command replaces this process (same pid), in a private mount namespace
where /sys shows the lab namespace's interfaces.`)
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		printHelp(fs)
		return exitOK
	}
	if len(args) < 2 {
		return usageError(fs, "NAME and ROLE are required")
	}
	name, role := args[0], args[1]
	if err := netlab.CheckName(name); err != nil {
		return usageError(fs, "NAME: %v", err)
	}
	var ns netlab.Namespace
	for _, r := range labRoles {
		if r.String() == role {
			ns = r
		}
	}
	if ns == 0 {
		return usageError(fs, "ROLE %q: want srv, nic, host or rtr", role)
	}
	if len(args) < 3 || args[2] != "--" {
		return usageError(fs, "want '--' after ROLE, then the command")
	}
	argv := args[3:]
	if len(argv) == 0 || argv[0] == "" {
		return usageError(fs, "COMMAND is required after '--'")
	}
	path := netlab.NamedNamespacePath(name, ns)
	if _, err := os.Stat(path); err != nil {
		fmt.Fprintf(stderr, "standbynic lab exec: lab %q has no %s namespace (%v); see 'standbynic lab status'\n", name, role, err)
		return exitFailure
	}
	err := execInNamespace(path, argv)
	fmt.Fprintf(stderr, "standbynic lab exec: %v\n", err)
	return exitFailure
}
