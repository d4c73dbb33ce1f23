// Package archtest holds the test that keeps the package graph pointing the
// way docs/architecture.md draws it. It has no code of its own.
package archtest
