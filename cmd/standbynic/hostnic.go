package main

import (
	"log/slog"

	"github.com/standbynic/standbynic/host"
	"github.com/standbynic/standbynic/nic"
)

var _ host.NIC = (*nic.Remote)(nil)

// dialNIC connects to the NIC daemon's control socket and returns it as the
// host's NIC (nic.Remote: every host call is a control request; wake events
// come from the wake stream) with the function that closes it.
func dialNIC(path string, log *slog.Logger) (host.NIC, func() error, error) {
	c, err := nic.DialControl(path)
	if err != nil {
		return nil, nil, err
	}
	r, err := c.Remote(&nic.RemoteConfig{Logger: log.With("component", "nic-remote")})
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return r, func() error {
		err := r.Close()
		c.Close()
		return err
	}, nil
}
