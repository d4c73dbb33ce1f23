// Package cpupin puts a load generator and the code it measures on
// separate CPUs, for the throughput benchmarks on veth.
//
// On a veth pair the receiving side's kernel work (the veth backlog, the
// AF_PACKET taps, the socket filter, the copy into the ring) runs in the
// sender's softirq, on the sender's CPU. The rate a benchmark sees is
// then the rate at which that one CPU can send and receive, and anything
// else the scheduler puts on it — a receiver woken there by the kernel's
// sync wake-up, a runtime thread — is taken off the rate, by chance.
// Split gives the calling goroutine's thread one CPU of its own and moves
// every other thread of the process (and, by inheritance, every thread it
// starts later) to the others, so that the generator and the receiver
// under test never share a CPU, whichever receiver it is.
package cpupin
