package netlab

import (
	"errors"
	"fmt"
	"time"
)

// MaxNATTimeout bounds the conntrack established-timeout Masquerade sets:
// the kernel's default (5 days).
const MaxNATTimeout = 432000 * time.Second

// MaxNameLen is the longest lab name CheckName accepts.
const MaxNameLen = 16

// CheckName checks a lab name: 1–16 characters, lowercase letters, digits
// and '-', starting with a letter and not ending with '-'. Eight hex
// digits are refused: they are the random tags of New's labs.
func CheckName(name string) error {
	switch {
	case name == "":
		return errors.New("lab name: empty")
	case len(name) > MaxNameLen:
		return fmt.Errorf("lab name %q: %d characters, at most %d", name, len(name), MaxNameLen)
	case name[0] < 'a' || name[0] > 'z':
		return fmt.Errorf("lab name %q: must start with a letter a–z", name)
	case name[len(name)-1] == '-':
		return fmt.Errorf("lab name %q: must not end with '-'", name)
	}
	hex := len(name) == 8
	for _, c := range name {
		switch {
		case c >= 'a' && c <= 'f', c >= '0' && c <= '9':
		case c >= 'g' && c <= 'z', c == '-':
			hex = false
		default:
			return fmt.Errorf("lab name %q: character %q not allowed (a–z, 0–9, '-')", name, c)
		}
	}
	if hex {
		return fmt.Errorf("lab name %q: 8 hex digits are reserved for the labs tests build", name)
	}
	return nil
}

// NamedNamespace returns the namespace name of role r in the lab named
// name ("sbn-<name>-<role>").
func NamedNamespace(name string, r Namespace) string {
	return "sbn-" + name + "-" + r.String()
}
