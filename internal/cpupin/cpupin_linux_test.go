//go:build linux

package cpupin

import (
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func mask(t *testing.T) unix.CPUSet {
	t.Helper()
	var s unix.CPUSet
	if err := unix.SchedGetaffinity(0, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSplit(t *testing.T) {
	orig := mask(t)
	if orig.Count() < 2 {
		if _, _, err := Split(); err == nil {
			t.Fatal("Split succeeded with one CPU")
		}
		t.Skipf("one CPU allowed: Split refuses (checked), nothing to separate")
	}
	// As in a program (the testing package sets GOMAXPROCS explicitly,
	// which would hide the runtime's automatic updates).
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	runtime.SetDefaultGOMAXPROCS()
	gen, restore, err := Split()
	if err != nil {
		t.Fatal(err)
	}
	if m := mask(t); m.Count() != 1 || !m.IsSet(gen) {
		t.Errorf("generator thread: %d CPUs, CPU %d set %v; want only CPU %d", m.Count(), gen, m.IsSet(gen), gen)
	}
	// A goroutine locked to a thread of its own: an existing thread or a
	// new one the runtime starts; neither may run on the generator's CPU.
	others := make(chan unix.CPUSet)
	for range 4 {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var s unix.CPUSet
			unix.SchedGetaffinity(0, &s)
			others <- s
		}()
	}
	for range 4 {
		s := <-others
		if s.IsSet(gen) || s.Count() != orig.Count()-1 {
			t.Errorf("another thread: %d CPUs, generator's CPU %d set %v", s.Count(), gen, s.IsSet(gen))
		}
	}
	// The runtime samples the affinity mask for GOMAXPROCS about once a
	// second: it must not follow the receivers' smaller set.
	procs := runtime.GOMAXPROCS(0)
	time.Sleep(1500 * time.Millisecond)
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Errorf("GOMAXPROCS went from %d to %d while pinned", procs, got)
	}
	restore()
	if m := mask(t); m != orig {
		t.Errorf("after restore: %d CPUs, want %d", m.Count(), orig.Count())
	}
}
