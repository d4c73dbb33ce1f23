//go:build !linux

package xdpgen
