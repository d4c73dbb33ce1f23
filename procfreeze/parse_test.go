package procfreeze

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const testMountinfo = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw
99 31 0:40 /sub /mnt/with\040space rw - ext4 /dev/x rw
`

func TestFindMounts(t *testing.T) {
	v2, v1 := findMounts([]byte(testMountinfo))
	if diff := cmp.Diff(mount{Root: "/", Point: "/sys/fs/cgroup/unified", FSType: "cgroup2", SuperOpts: "rw"}, v2); diff != "" {
		t.Errorf("v2 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(mount{Root: "/", Point: "/sys/fs/cgroup/freezer", FSType: "cgroup", SuperOpts: "rw,freezer"}, v1); diff != "" {
		t.Errorf("v1 freezer (-want +got):\n%s", diff)
	}
}

func TestParseMountLine(t *testing.T) {
	tests := []struct {
		name string
		line string
		want mount
		err  bool
	}{
		{"escaped space", `99 31 0:40 /sub /mnt/with\040space rw - ext4 /dev/x rw`, mount{"/sub", "/mnt/with space", "ext4", "rw"}, false},
		{"optional fields", `41 31 0:38 / /u rw shared:9 master:2 - cgroup2 cgroup2 rw,nsdelegate`, mount{"/", "/u", "cgroup2", "rw,nsdelegate"}, false},
		{"no separator", `41 31 0:38 / /u rw shared:9`, mount{}, true},
		{"short after separator", `41 31 0:38 / /u rw - cgroup2`, mount{}, true},
		{"bad escape", `41 31 0:38 / /u\04 rw - cgroup2 cgroup2 rw`, mount{}, true},
		{"empty", ``, mount{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMountLine(tt.line)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestCgroupPaths(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		v2, freeze string
	}{
		{"hybrid", "9:name=systemd:/\n6:freezer:/a/b\n4:memory:/x\n0::/user.slice/s\n", "/user.slice/s", "/a/b"},
		{"unified only", "0::/\n", "/", ""},
		{"joined controllers", "3:cpu,freezer:/j\n", "", "/j"},
		{"garbage", "x\n::\n0:\n", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v2, fr := cgroupPaths([]byte(tt.in))
			if diff := cmp.Diff([2]string{tt.v2, tt.freeze}, [2]string{v2, fr}); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want procStat
		err  bool
	}{
		{"sleep", "1234 (sleep) S 1 1234 1234 0 -1 4194304 90 0 0 0 7 3 0 0 20 0 1 0 5555 8110080 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0", procStat{'S', 7, 3, 5555}, false},
		{"comm with ') ('", "7 (a) (b) c) D 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 9 0 0 0", procStat{'D', 1, 2, 9}, false},
		{"truncated", "7 (x) R 1 2", procStat{}, true},
		{"no paren", "7 x R", procStat{}, true},
		{"non-number", "7 (x) R 1 7 7 0 -1 0 0 0 0 0 u 2 0 0 20 0 1 0 9 0 0 0", procStat{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat([]byte(tt.in))
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(procStat{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestKeyValueAndSocketLink(t *testing.T) {
	ev := []byte("populated 1\nfrozen 0\n")
	if v, ok := keyValue(ev, "frozen"); !ok || v != 0 {
		t.Errorf("frozen = %d, %v; want 0, true", v, ok)
	}
	if _, ok := keyValue(ev, "missing"); ok {
		t.Error("missing key found")
	}
	if _, ok := keyValue([]byte("frozen x\n"), "frozen"); ok {
		t.Error("non-number accepted")
	}
	tests := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"socket:[12345]", 12345, true},
		{"pipe:[1]", 0, false},
		{"socket:[]", 0, false},
		{"socket:[12", 0, false},
		{"/dev/null", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseSocketLink(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseSocketLink(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  *Config
		err  string
	}{
		{"nil", nil, ""},
		{"good", &Config{Name: "mqtt-sub_1", Mode: Cgroup1, Timeout: time.Second}, ""},
		{"upper case name", &Config{Name: "Sub"}, `procfreeze: name "Sub": byte 0 is 'S', want [a-z0-9_-]`},
		{"long name", &Config{Name: "abcdefghijklmnopqrstuvwxyz0123456"}, `procfreeze: name "abcdefghijklmnopqrstuvwxyz0123456": 33 bytes, at most 32`},
		{"slash", &Config{Name: "a/b"}, `procfreeze: name "a/b": byte 1 is '/', want [a-z0-9_-]`},
		{"mode", &Config{Mode: 9}, "procfreeze: mode Mode(9): want cgroup2, cgroup1-freezer, signal or 0"},
		{"timeout", &Config{Timeout: 2 * time.Minute}, "procfreeze: timeout 2m0s out of range 0–1m"},
		{"grace", &Config{StopGrace: -1}, "procfreeze: stop grace -1ns out of range 0–1m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.cfg.resolve()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if diff := cmp.Diff(tt.err, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	for _, m := range []Mode{Cgroup2, Cgroup1, Signal} {
		got, err := ParseMode(m.String())
		if err != nil || got != m {
			t.Errorf("ParseMode(%q) = %v, %v", m.String(), got, err)
		}
	}
	if m, err := ParseMode("auto"); err != nil || m != 0 {
		t.Errorf("ParseMode(auto) = %v, %v", m, err)
	}
	if _, err := ParseMode("cgroup3"); err == nil {
		t.Error("ParseMode(cgroup3) accepted")
	}
}

func TestTaskStateOK(t *testing.T) {
	tests := []struct {
		mode   Mode
		state  byte
		frozen bool
		want   bool
	}{
		{Cgroup2, 'S', true, true},
		{Cgroup2, 'R', true, false},
		{Cgroup1, 'D', true, true},
		{Signal, 'S', true, false},
		{Signal, 'T', true, true},
		{Signal, 'T', false, false},
		{Signal, 'R', false, true},
		{Cgroup2, 'Z', true, true},
	}
	for _, tt := range tests {
		if got := taskStateOK(tt.mode, tt.state, tt.frozen); got != tt.want {
			t.Errorf("taskStateOK(%v, %c, %v) = %v, want %v", tt.mode, tt.state, tt.frozen, got, tt.want)
		}
	}
}

// FuzzParsers feeds the kernel-file parsers any bytes: they never panic,
// and what parseStat accepts has a one-byte state.
func FuzzParsers(f *testing.F) {
	f.Add([]byte(testMountinfo))
	f.Add([]byte("1234 (sleep) S 1 1234 1234 0 -1 4194304 90 0 0 0 7 3 0 0 20 0 1 0 5555 8110080"))
	f.Add([]byte("0::/a\n6:freezer:/b\n"))
	f.Add([]byte(`1 2 3 / /a\0 rw - x y z`))
	f.Add([]byte("socket:[1]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		findMounts(b)
		_, _ = parseMountLine(string(b))
		cgroupPaths(b)
		if st, err := parseStat(b); err == nil && st.State == 0 {
			t.Errorf("parseStat(%q) accepted a NUL state", b)
		}
		keyValue(b, "frozen")
		parseSocketLink(string(b))
		ownerPID(string(b))
	})
}

func TestOwnerPID(t *testing.T) {
	tests := []struct {
		in  string
		pid int
		ok  bool
	}{
		{"standbynic-123-app-1", 123, true},
		{"standbynic-0-app-1", 0, false},
		{"standbynic-x-app-1", 0, false},
		{"other-123-app-1", 0, false},
		{"standbynic-123", 0, false},
	}
	for _, tt := range tests {
		pid, ok := ownerPID(tt.in)
		if pid != tt.pid && tt.ok || ok != tt.ok {
			t.Errorf("ownerPID(%q) = %d, %v; want %d, %v", tt.in, pid, ok, tt.pid, tt.ok)
		}
	}
}
