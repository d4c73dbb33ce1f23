// Package procfreeze holds real Linux processes for connected standby: it
// starts a program (Run) or adopts a running one by PID (Adopt) into a
// cgroup of its own, freezes and thaws it with the kernel's confirmation,
// and, while it is frozen, finds its TCP connections and takes a duplicate
// of each idle one (pidfd_getfd) for the host to put into TCP_REPAIR and
// hand to a NIC slot. The kernel socket is shared: what is done through
// the duplicate (TCP_REPAIR on and off, bytes put into the queues) is done
// to the app's own socket, whose fd is never touched.
//
// # Mechanisms (Mode), best first
//
//	Cgroup2  cgroup.freeze of a directory made in standbynic's cgroup of
//	         the unified hierarchy (found in /proc/self/mountinfo, not
//	         assumed at /sys/fs/cgroup); confirmed by cgroup.events
//	         "frozen 1". A started program is born in it (clone3
//	         CLONE_INTO_CGROUP).
//	Cgroup1  freezer.state of a directory in the v1 freezer hierarchy;
//	         confirmed by FROZEN. A started program is moved in right after
//	         its fork.
//	Signal   SIGSTOP / SIGCONT through a pidfd, the last resort: only the
//	         one process, its parent sees the stop, anyone's SIGCONT thaws.
//
// Every freeze and thaw is also confirmed task by task in /proc/TID/stat
// (frozen: never R — cgroup2 parks tasks in the signal path, state S; the
// v1 freezer in TASK_FROZEN, D; SIGSTOP, T), within Config.Timeout.
// Mode() reports which mechanism is in use.
//
// # States
//
//	Run / Adopt         Freeze                Thaw (closes the Sockets)
//	──────────> running ──────────> frozen ─────────────> running
//	                                  │ Sockets(idle)
//	                                  v
//	                    one Socket per socket fd: Conn (the duplicate)
//	                    or Err (ErrNotTCP, ErrNotEstablished, ErrBusy, …)
//	Close (any state) ──> released: Sockets closed, program stopped (Run:
//	  SIGTERM, SIGKILL after StopGrace, the whole cgroup) or thawed and put
//	  back in its own cgroups (Adopt: never signalled), directory removed.
//
// Sockets are matched to the process through /proc/PID/fd (socket:[inode])
// and NETLINK_SOCK_DIAG in the process's network namespace (state,
// addresses, queues). A duplicate shares the app's open file description;
// Go makes it non-blocking, so Socket.Close and Thaw put the original
// flags back before the app runs again.
//
// # Knobs
//
// Config.Name (the directory label), Mode (0: best available), Timeout
// (freeze/thaw confirmation, default 2 s), StopGrace (default 2 s).
//
// # Privileges
//
// Making and writing cgroups needs root or a delegated hierarchy
// (CAP_SYS_ADMIN); pidfd_getfd needs PTRACE_MODE_ATTACH over the process
// (CAP_SYS_PTRACE for another user's); sock_diag of another network
// namespace needs to enter it (/proc/PID/ns/net).
//
// # When standbynic dies
//
// Close runs on every normal exit and on SIGTERM (the caller's signal
// handler closes the host). After SIGKILL nothing runs: the processes stay
// frozen in their directories Prefix-<pid>-<name>-<n>, and their sockets
// stay in TCP_REPAIR if the host had frozen them (nothing is sent: the
// connection dies at the peer's timeout unless a host thaws it). Recover,
// called by a restarted host, finds the directories whose standbynic is
// gone, takes their processes' sockets out of TCP_REPAIR (TCP_REPAIR_OFF,
// whose window probe resynchronises the peer; what the NIC sent or
// absorbed meanwhile is lost, so the app may see the connection fail),
// thaws them and moves them to the parent cgroup.
package procfreeze
