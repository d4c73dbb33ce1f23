package main

// Process apps of the host command (issue 14): real programs the host
// freezes with itself, from the config file's "processes" and the --run
// and --adopt flags.

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/standbynic/standbynic/host"
	"github.com/standbynic/standbynic/offload"
	"github.com/standbynic/standbynic/procfreeze"
)

// processConfig is one process app: exactly one of Run (a command line,
// started in a cgroup of its own) and Adopt (a running PID).
type processConfig struct {
	Name  string   `json:"name"`
	Run   []string `json:"run,omitempty"`
	Adopt int      `json:"adopt"`
	// Mode is auto (default), cgroup2, cgroup1-freezer or signal.
	Mode     string   `json:"mode"`
	Interval duration `json:"interval"`
	Priority int      `json:"priority"`
	// ThawWindow is how long the process runs at a software wake (0:
	// 200ms).
	ThawWindow duration                `json:"thaw_window"`
	Endpoints  []processEndpointConfig `json:"endpoints,omitempty"`
}

// processEndpointConfig chooses the keep-alive of the connections to one
// remote endpoint.
type processEndpointConfig struct {
	// Remote is host:port, or :port for any address.
	Remote    string           `json:"remote"`
	KeepAlive *keepAliveConfig `json:"keepalive"`
	Interval  duration         `json:"interval"`
	// KeepAbsorbed gives the app the replies the NIC absorbed (default:
	// advanced past).
	KeepAbsorbed bool `json:"keep_absorbed"`
}

const (
	maxProcesses         = 16
	maxProcessEndpoints  = 16
	defaultProcessIV     = 30 * time.Second
	maxProcessThawWindow = time.Minute
)

// validateProcesses checks c.Processes, reporting through bad.
func (c *hostConfig) validateProcesses(bad func(field, format string, a ...any)) {
	if len(c.Processes) > maxProcesses {
		bad("processes", "%d processes, more than %d", len(c.Processes), maxProcesses)
	}
	names := map[string]int{}
	lo, hi := c.intervalBounds()
	for i := range c.Processes {
		pc := &c.Processes[i]
		pp := fmt.Sprintf("processes[%d]", i)
		if err := checkProcessName(pc.Name); err != nil {
			bad(pp+".name", "%v", err)
		} else if j, dup := names[pc.Name]; dup {
			bad(pp+".name", "%q already used by processes[%d]", pc.Name, j)
		} else {
			names[pc.Name] = i
		}
		switch {
		case len(pc.Run) == 0 && pc.Adopt == 0:
			bad(pp, "want run (a command line) or adopt (a PID)")
		case len(pc.Run) > 0 && pc.Adopt != 0:
			bad(pp, "run and adopt both given: want one")
		case pc.Adopt < 0 || pc.Adopt > 1<<22:
			bad(pp+".adopt", "%d out of range 2–%d", pc.Adopt, 1<<22)
		case len(pc.Run) > 1024:
			bad(pp+".run", "%d elements, more than 1024", len(pc.Run))
		case len(pc.Run) > 0 && pc.Run[0] == "":
			bad(pp+".run[0]", "empty program")
		}
		if _, err := procfreeze.ParseMode(pc.Mode); err != nil {
			bad(pp+".mode", "%v", err)
		}
		checkIV := func(field string, d duration) {
			iv := time.Duration(d)
			switch {
			case iv == 0:
			case iv < lo:
				bad(field, "%s below minimum %s", fmtDuration(iv), fmtDuration(lo))
			case iv > hi:
				bad(field, "%s above maximum %s", fmtDuration(iv), fmtDuration(hi))
			}
		}
		checkIV(pp+".interval", pc.Interval)
		if pc.Priority < -maxPriority || pc.Priority > maxPriority {
			bad(pp+".priority", "%d out of range %d–%d", pc.Priority, -maxPriority, maxPriority)
		}
		if w := time.Duration(pc.ThawWindow); w < 0 || w > maxProcessThawWindow {
			bad(pp+".thaw_window", "%v out of range 0–%v", w, maxProcessThawWindow)
		}
		if len(pc.Endpoints) > maxProcessEndpoints {
			bad(pp+".endpoints", "%d endpoints, more than %d", len(pc.Endpoints), maxProcessEndpoints)
		}
		for j := range pc.Endpoints {
			ep := &pc.Endpoints[j]
			epp := fmt.Sprintf("%s.endpoints[%d]", pp, j)
			if _, err := parseProcessRemote(ep.Remote); err != nil {
				bad(epp+".remote", "%q: %v", ep.Remote, err)
			}
			checkIV(epp+".interval", ep.Interval)
			if _, errs := processKeepAlive(ep.KeepAlive); len(errs) > 0 {
				for _, fe := range errs {
					bad(epp+"."+fe.field, "%s", fe.msg)
				}
			}
		}
	}
}

func checkProcessName(s string) error {
	if s == "" || len(s) > procfreeze.MaxNameLen {
		return fmt.Errorf("%q: %d bytes, want 1–%d", s, len(s), procfreeze.MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '_' || ch == '-') {
			return fmt.Errorf("%q: byte %d is %q, want [a-z0-9_-]", s, i, ch)
		}
	}
	return nil
}

// parseProcessRemote reads host:port or :port (any address).
func parseProcessRemote(s string) (netip.AddrPort, error) {
	if s == "" {
		return netip.AddrPort{}, nil // every connection
	}
	if p, ok := strings.CutPrefix(s, ":"); ok {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return netip.AddrPort{}, fmt.Errorf("port %q: want 1–65535", p)
		}
		return netip.AddrPortFrom(netip.Addr{}, uint16(n)), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("want ADDRESS:PORT or :PORT (an IP address, not a name): %v", err)
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("port 0")
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// processKeepAlive reads an endpoint's keep-alive object (nil: by port).
func processKeepAlive(ka *keepAliveConfig) (host.KeepAliveConfig, []fieldError) {
	var out host.KeepAliveConfig
	if ka == nil {
		return out, nil
	}
	var errs []fieldError
	bad := func(field, format string, a ...any) {
		errs = append(errs, fieldError{field, fmt.Sprintf(format, a...)})
	}
	if ka.Line != nil {
		bad("keepalive", "a process endpoint takes an object {\"kind\": …}, not a line")
		return out, errs
	}
	k, err := host.ParseKeepAliveKind(ka.Kind)
	if err != nil {
		bad("keepalive.kind", "%v", err)
	}
	out.Kind = k
	switch ka.Probe {
	case "", "zero-byte":
	case "one-byte":
		out.Probe = offload.ProbeOneByte
	default:
		bad("keepalive.probe", "%q: want zero-byte or one-byte", ka.Probe)
	}
	switch ka.WSMode {
	case "", "ping":
		out.WSMode = offload.WSPing
	case "pong":
		out.WSMode = offload.WSPong
	case "responder":
		out.WSMode = offload.WSResponder
	default:
		bad("keepalive.ws_mode", "%q: want ping, pong or responder", ka.WSMode)
	}
	for _, f := range []struct {
		name string
		b    *bytesConfig
		to   *[]byte
	}{{"request", ka.Request, &out.Request}, {"reply", ka.Reply, &out.Reply}, {"reply_mask", ka.ReplyMask, &out.ReplyMask}} {
		if f.b == nil {
			continue
		}
		v, err := f.b.bytes()
		if err != nil {
			bad("keepalive."+f.name, "%v", err)
			continue
		}
		if len(v) > offload.MaxPayload {
			bad("keepalive."+f.name, "%d bytes, more than %d", len(v), offload.MaxPayload)
			continue
		}
		*f.to = v
	}
	if k == host.KeepAlivePayload && (len(out.Request) == 0 || len(out.Reply) == 0) {
		bad("keepalive", "payload needs a request and a reply")
	}
	return out, errs
}

// processFlag is one --run NAME=COMMAND LINE or --adopt NAME=PID.
func parseProcessFlag(s string, adopt bool) (processConfig, error) {
	name, rest, ok := strings.Cut(s, "=")
	if !ok {
		if adopt {
			return processConfig{}, fmt.Errorf("%q: want NAME=PID", s)
		}
		return processConfig{}, fmt.Errorf("%q: want NAME=COMMAND LINE", s)
	}
	if err := checkProcessName(name); err != nil {
		return processConfig{}, err
	}
	pc := processConfig{Name: name}
	if adopt {
		pid, err := strconv.Atoi(rest)
		if err != nil || pid < 2 || pid > 1<<22 {
			return processConfig{}, fmt.Errorf("%q: PID %q out of range 2–%d", s, rest, 1<<22)
		}
		pc.Adopt = pid
		return pc, nil
	}
	pc.Run = strings.Fields(rest)
	if len(pc.Run) == 0 {
		return processConfig{}, fmt.Errorf("%q: empty command line", s)
	}
	return pc, nil
}

// startProcesses recovers what a killed host left, then starts or adopts
// every process app and gives it to h. The caller closes the returned
// processes after h (whose Close thaws them).
func startProcesses(ctx context.Context, log *slog.Logger, h *host.Host, cfg *hostConfig) ([]*procfreeze.Process, []*host.ProcessApp, error) {
	if len(cfg.Processes) == 0 {
		return nil, nil, nil
	}
	recs, err := procfreeze.Recover()
	for _, r := range recs {
		log.Warn("recovered a process a killed host left frozen", "cgroup", r.Dir, "mode", r.Mode.String(), "pids", fmt.Sprint(r.PIDs), "sockets_out_of_repair", r.Repaired)
	}
	if err != nil {
		log.Warn("recover", "err", err)
	}
	var out []*procfreeze.Process
	var apps []*host.ProcessApp
	fail := func(err error) ([]*procfreeze.Process, []*host.ProcessApp, error) {
		for _, p := range out {
			p.Close()
		}
		return nil, nil, err
	}
	for i := range cfg.Processes {
		pc := &cfg.Processes[i]
		mode, _ := procfreeze.ParseMode(pc.Mode) // validated
		fc := &procfreeze.Config{Name: pc.Name, Mode: mode}
		var p *procfreeze.Process
		var err error
		if pc.Adopt != 0 {
			p, err = procfreeze.Adopt(fc, pc.Adopt)
		} else {
			p, err = procfreeze.Run(fc, procfreeze.RunConfig{Argv: pc.Run, Stdout: os.Stdout, Stderr: os.Stderr})
		}
		if err != nil {
			return fail(fmt.Errorf("process %s: %w", pc.Name, err))
		}
		out = append(out, p)
		iv := time.Duration(pc.Interval)
		if iv == 0 {
			iv = defaultProcessIV
		}
		hc := host.ProcessConfig{Name: pc.Name, Process: p, Interval: iv, Priority: pc.Priority, ThawWindow: time.Duration(pc.ThawWindow)}
		for _, ep := range pc.Endpoints {
			remote, _ := parseProcessRemote(ep.Remote)
			ka, _ := processKeepAlive(ep.KeepAlive)
			hc.Endpoints = append(hc.Endpoints, host.ProcessEndpoint{Remote: remote, KeepAlive: ka, Interval: time.Duration(ep.Interval), KeepAbsorbed: ep.KeepAbsorbed})
		}
		pa, err := h.AddProcess(hc)
		if err != nil {
			return fail(fmt.Errorf("process %s: %w", pc.Name, err))
		}
		apps = append(apps, pa)
		log.Info("process", "name", pc.Name, "pid", p.PID(), "started", p.Started(), "mode", p.Mode().String(), "cgroup", p.Dir(), "interval", iv)
	}
	return out, apps, nil
}

// logProcessBooks logs each process app's counters (at exit).
func logProcessBooks(log *slog.Logger, apps []*host.ProcessApp, names []processConfig) {
	for i, pa := range apps {
		st := pa.Stats()
		log.Info("process books", "name", names[i].Name, "mode", st.Mode.String(), "freezes", st.Freezes, "thaws", st.Thaws,
			"window_thaws", st.WindowThaws, "freeze_errors", st.FreezeErrors, "hardware_connections", st.Hardware,
			"software_connections", st.Software, "skipped_absorbed_bytes", st.SkippedAbsorbed,
			"last_wake_latency", st.LastWakeLatency, "max_wake_latency", st.MaxWakeLatency, "notes", strings.Join(st.Notes, "; "))
	}
}
