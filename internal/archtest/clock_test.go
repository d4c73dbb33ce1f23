package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// clockFree lists the packages whose logic takes an injected clock and must
// never read the system clock or arm a runtime timer themselves.
var clockFree = []string{"wakepattern", "offload", "slotmgr", "profile"}

// clockCalls are the functions of package time that read the clock or arm a
// timer.
var clockCalls = map[string]bool{
	"Now": true, "Since": true, "Until": true, "AfterFunc": true,
	"After": true, "Tick": true, "NewTimer": true, "NewTicker": true, "Sleep": true,
}

// clockReads returns "file:line time.X" for every call of a clockCalls
// function in the Go source src.
func clockReads(fset *token.FileSet, name string, src any) ([]string, error) {
	f, err := parser.ParseFile(fset, name, src, 0)
	if err != nil {
		return nil, err
	}
	timeName := ""
	for _, imp := range f.Imports {
		if imp.Path.Value == `"time"` {
			timeName = "time"
			if imp.Name != nil {
				timeName = imp.Name.Name
			}
		}
	}
	if timeName == "" {
		return nil, nil
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		if id, ok := sel.X.(*ast.Ident); ok && id.Name == timeName && clockCalls[sel.Sel.Name] {
			out = append(out, fset.Position(sel.Pos()).String()+" time."+sel.Sel.Name)
		}
		return true
	})
	return out, nil
}

// TestNoClockReads fails when a clock-free package reads the system clock
// outside its tests.
func TestNoClockReads(t *testing.T) {
	root := repoRoot(t)
	fset := token.NewFileSet()
	for _, pkg := range clockFree {
		files, err := filepath.Glob(filepath.Join(root, pkg, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			t.Errorf("package %s has no Go files", pkg)
		}
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			reads, err := clockReads(fset, file, src)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range reads {
				t.Errorf("%s: %s reads the system clock; take a Clock instead", r, pkg)
			}
		}
	}
}

// TestClockReadsDetected proves the check can fail.
func TestClockReadsDetected(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want int
	}{
		{"time.Now", "package p\nimport \"time\"\nvar x = time.Now()\n", 1},
		{"renamed import", "package p\nimport t \"time\"\nfunc f() { t.Sleep(1); _ = t.Since(t.Time{}) }\n", 2},
		{"durations only", "package p\nimport \"time\"\nconst d = 3 * time.Second\n", 0},
		{"no time import", "package p\nfunc Now() {}\nfunc f() { Now() }\n", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := clockReads(token.NewFileSet(), "x.go", tt.src)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.want {
				t.Errorf("clockReads = %q, want %d reads", got, tt.want)
			}
		})
	}
}
