//go:build linux

package cpupin

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// maxCPUs is the size of unix.CPUSet (the kernel's CPU_SETSIZE).
const maxCPUs = 1024

// Split locks the calling goroutine to its thread, pins that thread to
// the first CPU the process may run on and every other thread of the
// process to the remaining ones. It needs at least two allowed CPUs.
// It returns the generator's CPU and restore, which puts every thread
// back on the original set and unlocks the goroutine; call restore from
// the same goroutine. GOMAXPROCS keeps its value throughout, set
// explicitly (which stops the runtime's automatic updates, for good).
func Split() (gen int, restore func(), err error) {
	var orig unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		return 0, nil, fmt.Errorf("cpupin: sched_getaffinity: %w", err)
	}
	if orig.Count() < 2 {
		return 0, nil, fmt.Errorf("cpupin: %d CPU allowed, need 2 to separate a generator from its receivers", orig.Count())
	}
	gen = -1
	rest := orig
	for c := range maxCPUs {
		if orig.IsSet(c) {
			gen = c
			break
		}
	}
	rest.Clear(gen)
	var genSet unix.CPUSet
	genSet.Set(gen)

	// Since Go 1.25 the runtime follows the process's affinity mask with
	// GOMAXPROCS, from whatever thread samples it: it would see only the
	// receivers' CPUs and take a P away, so that the sender and the
	// receivers share one. Setting the value explicitly stops that.
	procs := runtime.GOMAXPROCS(0)
	runtime.GOMAXPROCS(procs)

	// LockOSThread first: the first call starts the runtime's template
	// thread (from this thread, with its mask), which the loop below then
	// moves with the others; the runtime starts threads for a locked
	// goroutine from that template thread, never from this one.
	runtime.LockOSThread()
	self := unix.Gettid()
	if err := unix.SchedSetaffinity(0, &genSet); err != nil {
		runtime.UnlockOSThread()
		return 0, nil, fmt.Errorf("cpupin: pin generator to CPU %d: %w", gen, err)
	}
	// Threads started while we walk the list inherit their parent's mask,
	// which may not be set yet: walk until a pass moves nothing new.
	seen := map[int]bool{}
	for range 4 {
		moved, err := setAll(&rest, self, seen)
		if err != nil {
			setAll(&orig, -1, map[int]bool{})
			runtime.UnlockOSThread()
			return 0, nil, err
		}
		if moved == 0 {
			break
		}
	}
	return gen, func() {
		setAll(&orig, -1, map[int]bool{})
		runtime.UnlockOSThread()
	}, nil
}

// setAll sets the mask of every thread of the process but skip and those
// in seen, adds them to seen, and returns how many it set.
func setAll(set *unix.CPUSet, skip int, seen map[int]bool) (int, error) {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0, fmt.Errorf("cpupin: list threads: %w", err)
	}
	n := 0
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil || tid == skip || seen[tid] {
			continue
		}
		seen[tid] = true
		if err := unix.SchedSetaffinity(tid, set); err != nil {
			if errors.Is(err, unix.ESRCH) {
				continue // exited meanwhile
			}
			return n, fmt.Errorf("cpupin: sched_setaffinity thread %d: %w", tid, err)
		}
		n++
	}
	return n, nil
}
