// Package porttest provides an in-memory pipe implementation of nic.Port for
// unit tests, so the same test can run on a fake port or on a veth pair.
package porttest
