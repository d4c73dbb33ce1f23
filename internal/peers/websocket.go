//go:build linux

package peers

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/standbynic/standbynic/internal/netlab"
)

// nodeWSScript is the WebSocket server: the Debian node-ws module, a few
// lines of glue. Events go to stdout, one line each:
//
//	listening PORT
//	open N PATH?QUERY          a connection (N counts from 1)
//	message N text|binary HEX  a message from the client
//	ping N HEX / pong N HEX    a control frame from the client (ws answers Pings itself)
//	sent-ping N K              the server's K-th Ping on connection N (?ping=MS)
//	pushed N ok|ERROR          a push written
//	close N CODE
//
// Commands come on stdin: "push N text|binary HEX".
const nodeWSScript = `'use strict';
const { WebSocketServer } = require('ws');
const readline = require('readline');
const [host, port] = [process.argv[2], Number(process.argv[3])];
const wss = new WebSocketServer({ host, port });
const conns = new Map();
let n = 0;
wss.on('listening', () => console.log('listening ' + wss.address().port));
wss.on('connection', (ws, req) => {
  const id = ++n;
  conns.set(id, ws);
  const url = new URL(req.url, 'http://peer');
  console.log('open ' + id + ' ' + url.pathname + url.search);
  ws.on('message', (d, binary) => console.log('message ' + id + ' ' + (binary ? 'binary' : 'text') + ' ' + Buffer.from(d).toString('hex')));
  ws.on('ping', (d) => console.log('ping ' + id + ' ' + d.toString('hex')));
  ws.on('pong', (d) => console.log('pong ' + id + ' ' + d.toString('hex')));
  const every = Number(url.searchParams.get('ping') || 0);
  let k = 0;
  const timer = every > 0 ? setInterval(() => { k++; ws.ping(Buffer.from('srv' + k)); console.log('sent-ping ' + id + ' ' + k); }, every) : null;
  ws.on('close', (code) => { if (timer) clearInterval(timer); conns.delete(id); console.log('close ' + id + ' ' + code); });
});
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const [cmd, id, kind, data] = line.split(' ');
  if (cmd !== 'push') return;
  const ws = conns.get(Number(id));
  if (!ws) { console.log('pushed ' + id + ' no-such-connection'); return; }
  ws.send(Buffer.from(data || '', 'hex'), { binary: kind === 'binary' }, (err) => console.log('pushed ' + id + ' ' + (err ? err.message : 'ok')));
});
`

// NodeWS is a running WebSocket server on node-ws.
type NodeWS struct {
	Addr netip.AddrPort
	Proc *Proc
}

// StartNodeWS runs the WebSocket server on addr in ns.
func StartNodeWS(t testing.TB, lab *netlab.Lab, ns netlab.Namespace, addr netip.AddrPort) *NodeWS {
	t.Helper()
	node := lookPath(t, "node")
	const modules = "/usr/share/nodejs"
	if _, err := filepathStat(filepath.Join(modules, "ws", "package.json")); err != nil {
		t.Fatalf(`peers: node's ws module not in %s: install the Debian package "node-ws"`, modules)
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "wsserver.js")
	writeFile(t, script, nodeWSScript)
	p := startIn(t, lab, ns, dir, []string{"NODE_PATH=" + modules}, true, node, script, addr.Addr().String(), strconv.Itoa(int(addr.Port())))
	p.WaitOutput(t, regexp.MustCompile(`(?m)^listening \d+$`), 15*time.Second)
	return &NodeWS{Addr: addr, Proc: p}
}

// Push sends data as a text (or binary) message on connection conn (1 for
// the first) and waits until node wrote it.
func (s *NodeWS) Push(t testing.TB, conn int, data []byte, binary bool) {
	t.Helper()
	kind := "text"
	if binary {
		kind = "binary"
	}
	before := strings.Count(s.Proc.Output(), fmt.Sprintf("pushed %d ", conn))
	if _, err := fmt.Fprintf(s.Proc.stdin, "push %d %s %s\n", conn, kind, hex.EncodeToString(data)); err != nil {
		t.Fatalf("peers: node-ws push: %v", err)
	}
	re := regexp.MustCompile(fmt.Sprintf(`(?s)(pushed %d \S+.*){%d}`, conn, before+1))
	s.Proc.WaitOutput(t, re, 10*time.Second)
	if m := regexp.MustCompile(fmt.Sprintf(`pushed %d (\S+)`, conn)).FindAllStringSubmatch(s.Proc.Output(), -1); m[len(m)-1][1] != "ok" {
		t.Fatalf("peers: node-ws push on connection %d: %s", conn, m[len(m)-1][1])
	}
}

// Count returns the lines of node's output that start with event and the
// connection number ("ping 1", "sent-ping 1", "open", "close 1").
func (s *NodeWS) Count(event string, conn int) int {
	prefix := event + " "
	if conn > 0 {
		prefix += strconv.Itoa(conn) + " "
	}
	n := 0
	for _, l := range strings.Split(s.Proc.Output(), "\n") {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// Messages returns the messages connection conn received from its client.
func (s *NodeWS) Messages(conn int) [][]byte {
	var out [][]byte
	prefix := fmt.Sprintf("message %d ", conn)
	for _, l := range strings.Split(s.Proc.Output(), "\n") {
		if rest, ok := strings.CutPrefix(l, prefix); ok {
			_, h, _ := strings.Cut(rest, " ")
			b, _ := hex.DecodeString(h)
			out = append(out, b)
		}
	}
	return out
}

// NginxConfig configures nginx as a WebSocket reverse proxy.
type NginxConfig struct {
	// Addr of both listeners; zero: the lab's Srv4.
	Addr netip.Addr
	// Port of the plain listener; 0: 8080.
	Port uint16
	// TLSPort of the TLS listener; 0: none. CA issues its certificate.
	TLSPort uint16
	CA      *CA
	// Upstream is the WebSocket server nginx proxies /ws to.
	Upstream netip.AddrPort
	// ReadTimeout is proxy_read_timeout and proxy_send_timeout: nginx
	// closes a proxied connection silent for that long (whole seconds,
	// at least 1 s).
	ReadTimeout time.Duration
}

// Nginx is a running nginx.
type Nginx struct {
	// Addr and TLSAddr are its listeners (TLSAddr invalid without TLS).
	Addr, TLSAddr netip.AddrPort
	// ErrorLog is nginx's error log (level info: client and upstream
	// timeouts are logged there).
	ErrorLog *LogFile
	// AccessLog has a line per ended request (the upgraded connection's
	// status 101 and its duration).
	AccessLog *LogFile
	Proc      *Proc
}

// StartNginx runs nginx (one process, in the foreground) in ns.
func StartNginx(t testing.TB, lab *netlab.Lab, ns netlab.Namespace, cfg NginxConfig) *Nginx {
	t.Helper()
	bin := lookPath(t, "nginx")
	dir := t.TempDir()
	addr := cfg.Addr
	if !addr.IsValid() {
		addr = lab.Addr.Srv4
	}
	port := cfg.Port
	if port == 0 {
		port = 8080
	}
	rt := int(cfg.ReadTimeout / time.Second)
	if rt < 1 {
		t.Fatalf("peers: nginx read timeout %v, want at least 1s", cfg.ReadTimeout)
	}
	n := &Nginx{Addr: netip.AddrPortFrom(addr, port)}
	listen := fmt.Sprintf("    listen %s;\n", n.Addr)
	tls := ""
	if cfg.TLSPort != 0 {
		if cfg.CA == nil {
			t.Fatal("peers: nginx TLS listener without a CA")
		}
		certFile, keyFile := cfg.CA.ServerCert(t, "nginx", []netip.Addr{addr}, "proxy.test")
		n.TLSAddr = netip.AddrPortFrom(addr, cfg.TLSPort)
		listen += fmt.Sprintf("    listen %s ssl;\n", n.TLSAddr)
		tls = fmt.Sprintf("    ssl_certificate %s;\n    ssl_certificate_key %s;\n    ssl_protocols TLSv1.2 TLSv1.3;\n", certFile, keyFile)
	}
	errLog, accLog := filepath.Join(dir, "error.log"), filepath.Join(dir, "access.log")
	conf := fmt.Sprintf(`# generated by internal/peers
daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[2]s info;
events { worker_connections 64; }
http {
  access_log %[3]s;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server {
%[4]s%[5]s    location /ws {
      proxy_pass http://%[6]s;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_read_timeout %[7]ds;
      proxy_send_timeout %[7]ds;
    }
  }
}
`, dir, errLog, accLog, listen, tls, cfg.Upstream, rt)
	path := filepath.Join(dir, "nginx.conf")
	writeFile(t, path, conf)
	n.Proc = start(t, lab, ns, dir, nil, bin, "-p", dir, "-c", path, "-e", errLog)
	n.ErrorLog = &LogFile{Path: errLog, proc: n.Proc}
	n.AccessLog = &LogFile{Path: accLog, proc: n.Proc}
	// nginx logs nothing when it is up: wait until its listener accepts.
	waitListening(t, lab, ns, n.Addr, n.Proc, 10*time.Second)
	return n
}
