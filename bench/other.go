//go:build !linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"
)

var errNotLinux = fmt.Errorf("needs Linux (AF_PACKET, network namespaces), not implemented on %s", runtime.GOOS)

func classifyKernel(_ context.Context, _ *env, s *Scenario, _ []*connSet, _ func(string, float64, float64)) error {
	s.Skipped = append(s.Skipped, "kernel BPF rows: "+errNotLinux.Error())
	return nil
}

func runRx(context.Context, *env, *Scenario) error          { return errNotLinux }
func runForward(context.Context, *env, *Scenario) error     { return errNotLinux }
func runWakeLatency(context.Context, *env, *Scenario) error { return errNotLinux }

func kernelKeepalive(_ context.Context, _ *env, s *Scenario) (*Measurement, *Measurement, string, error) {
	s.Skipped = append(s.Skipped, "kernel keep-alive: "+errNotLinux.Error())
	return nil, nil, "", nil
}

func processCPU() (time.Duration, error) { return 0, errors.New("process CPU: " + errNotLinux.Error()) }
