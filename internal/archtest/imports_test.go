package archtest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/standbynic/standbynic"

// rule says which project packages a package may import and which standard
// or third-party packages it must not import (outside its _test.go files).
type rule struct {
	may    []string // project packages (relative to the module) it may import
	forbid []string // import paths it must never import
}

// common to every product package: no shelling out, no test code.
var productForbid = []string{"os/exec", "testing"}

var rules = map[string]rule{
	"wakepattern": {
		may: nil,
		// Pure: no I/O, no clock, no goroutine owners.
		forbid: []string{"os", "time", "syscall", "net/http", "golang.org/x/sys/unix", "github.com/google/gopacket"},
	},
	"offload": {
		may:    []string{"wakepattern"},
		forbid: []string{"os", "syscall", "net/http", "golang.org/x/sys/unix", "github.com/google/gopacket"},
	},
	"slotmgr": {
		may:    []string{"offload", "wakepattern"},
		forbid: []string{"os", "syscall", "net", "net/http", "golang.org/x/sys/unix", "github.com/google/gopacket"},
	},
	"profile": {
		// Firmware profiles: data plus engine switches, no datapath.
		may:    []string{"offload", "wakepattern"},
		forbid: []string{"os", "syscall", "net/http", "golang.org/x/sys/unix", "github.com/google/gopacket"},
	},
	"nic": {
		may: []string{"offload", "wakepattern", "profile", "nic/xdp"},
	},
	"nic/xdp": {
		// The D3 XDP program: generated from a pattern set, no frames of
		// its own beyond the program's.
		may: []string{"wakepattern"},
	},
	"nic/porttest": {
		may: []string{"nic", "offload", "wakepattern"},
	},
	"host": {
		may: []string{"slotmgr", "offload", "wakepattern", "nic", "procfreeze"},
	},
	"fleet": {
		// Many modelled devices against a real broker; the report reuses
		// bench's SVG plots.
		may: []string{"bench"},
	},
	"procfreeze": {
		// The OS side of real processes: no project package, so host can
		// use it (the idle check is handed in).
		may: nil,
	},
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// packageImports returns, per package directory (relative to root), the
// imports of its non-test Go files.
func packageImports(t *testing.T, root string) map[string]map[string]bool {
	t.Helper()
	out := map[string]map[string]bool{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		if out[rel] == nil {
			out[rel] = map[string]bool{}
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			out[rel][p] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// violations lists every import in pkgs that goes against rules.
func violations(pkgs map[string]map[string]bool) []string {
	var out []string
	for dir, imps := range pkgs {
		r, product := rules[dir]
		for imp := range imps {
			if product {
				for _, f := range append(append([]string(nil), productForbid...), r.forbid...) {
					if imp == f || strings.HasPrefix(imp, f+"/") {
						out = append(out, dir+" imports "+imp+", which the architecture forbids")
						break
					}
				}
			}
			if !product || !strings.HasPrefix(imp, module+"/") {
				continue // cmd, bench and internal/* may import product packages
			}
			target := strings.TrimPrefix(imp, module+"/")
			if strings.HasPrefix(target, "internal/") {
				out = append(out, "product package "+dir+" imports the lab package "+target)
				continue
			}
			allowed := false
			for _, m := range r.may {
				allowed = allowed || target == m
			}
			if !allowed {
				out = append(out, dir+" imports "+target+", against the architecture's direction")
			}
		}
	}
	sort.Strings(out)
	return out
}

// TestImportDirection fails when a package imports against the direction of
// docs/architecture.md.
func TestImportDirection(t *testing.T) {
	pkgs := packageImports(t, repoRoot(t))
	if len(pkgs) == 0 {
		t.Fatal("found no packages")
	}
	for _, v := range violations(pkgs) {
		t.Error(v)
	}
}

// TestViolationsDetected proves the checker can fail: each synthetic graph
// below breaks one rule.
func TestViolationsDetected(t *testing.T) {
	tests := []struct {
		name string
		dir  string
		imp  string
	}{
		{"wakepattern imports nic", "wakepattern", module + "/nic"},
		{"wakepattern imports host", "wakepattern", module + "/host"},
		{"wakepattern imports offload", "wakepattern", module + "/offload"},
		{"wakepattern imports slotmgr", "wakepattern", module + "/slotmgr"},
		{"wakepattern imports os/exec", "wakepattern", "os/exec"},
		{"wakepattern imports testing", "wakepattern", "testing"},
		{"offload imports nic", "offload", module + "/nic"},
		{"slotmgr imports net", "slotmgr", "net"},
		{"nic imports host", "nic", module + "/host"},
		{"host imports the lab", "host", module + "/internal/netlab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := violations(map[string]map[string]bool{tt.dir: {tt.imp: true}})
			if len(got) != 1 {
				t.Errorf("violations = %q, want exactly one", got)
			}
		})
	}
	if got := violations(map[string]map[string]bool{"offload": {module + "/wakepattern": true}}); len(got) != 0 {
		t.Errorf("offload importing wakepattern flagged: %q", got)
	}
}

// TestRulesCoverProductPackages keeps the rule table honest: every product
// package named in it exists, so a rename cannot silently drop a check.
func TestRulesCoverProductPackages(t *testing.T) {
	pkgs := packageImports(t, repoRoot(t))
	for dir := range rules {
		if _, ok := pkgs[dir]; !ok {
			t.Errorf("rule for %s, but no such package", dir)
		}
	}
}

// TestBinaryDoesNotLinkTesting: no package the standbynic command links
// (its project packages, transitively; _test.go files aside) imports
// package testing, so the shipped binary carries no test code and no
// test flags. netlab's test helpers take a small interface (netlab.TB)
// for that reason.
func TestBinaryDoesNotLinkTesting(t *testing.T) {
	pkgs := packageImports(t, repoRoot(t))
	if bad := linksTesting(pkgs, "cmd/standbynic"); bad != "" {
		t.Errorf("the standbynic binary links package testing through %s", bad)
	}
	// The check itself: a product package that imports testing is found.
	fake := map[string]map[string]bool{
		"cmd/standbynic":  {module + "/nic": true},
		"nic":             {module + "/internal/netlab": true},
		"internal/netlab": {"testing": true},
	}
	if got := linksTesting(fake, "cmd/standbynic"); got != "internal/netlab" {
		t.Errorf("linksTesting on a package graph through internal/netlab = %q", got)
	}
}

// linksTesting returns the first project package reachable from root
// (relative to the module) whose non-test files import testing, or "".
func linksTesting(pkgs map[string]map[string]bool, root string) string {
	seen := map[string]bool{}
	var walk func(p string) string
	walk = func(p string) string {
		if seen[p] {
			return ""
		}
		seen[p] = true
		imps := make([]string, 0, len(pkgs[p]))
		for imp := range pkgs[p] {
			imps = append(imps, imp)
		}
		sort.Strings(imps)
		for _, imp := range imps {
			if imp == "testing" {
				return p
			}
			if rel, ok := strings.CutPrefix(imp, module+"/"); ok {
				if bad := walk(rel); bad != "" {
					return bad
				}
			}
		}
		return ""
	}
	return walk(root)
}
