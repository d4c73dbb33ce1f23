// Package netlab builds the lab topology of standbynic — network namespaces
// joined by veth pairs with addresses from 198.18.0.0/15 — and tears it
// down. It also gates privileged tests. Product packages must not import it.
package netlab
