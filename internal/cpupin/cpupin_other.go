//go:build !linux

package cpupin

import "errors"

// Split is Linux only.
func Split() (gen int, restore func(), err error) {
	return 0, nil, errors.New("cpupin: thread affinity is Linux only")
}
