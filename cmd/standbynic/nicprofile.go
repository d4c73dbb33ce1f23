package main

import (
	"flag"

	"github.com/standbynic/standbynic/profile"
)

// newProfileFlag adds the nic command's --profile flag.
func newProfileFlag(fs *cmdFlags) *string {
	return newChoiceFlag(fs, "profile", profile.GenericName, profile.Names(),
		"firmware profile the NIC runs: its slot count (unless --slots is given), limits and keep-alive behaviour (docs/profiles.md)")
}

// flagSet reports whether the named flag was given on the command line.
func flagSet(fs *cmdFlags, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

// nicProfile returns the named profile (validated by the flag); nil for
// generic.
func nicProfile(name string) *profile.Profile {
	if name == "" || name == profile.GenericName {
		return nil
	}
	p, err := profile.Lookup(name)
	if err != nil {
		return nil
	}
	return &p
}
