// Package nic is the emulated connected-standby network adapter: a bump in
// the wire between the host's link and the network's link that forwards
// frames while the host is awake (D0) and guards it while it sleeps (D3).
package nic
