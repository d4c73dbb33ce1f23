//go:build !linux

package main

import (
	"fmt"
	"runtime"
)

// execInNamespace returns an error: labs need Linux.
func execInNamespace(path string, argv []string) error {
	return fmt.Errorf("lab exec: not implemented on %s", runtime.GOOS)
}
