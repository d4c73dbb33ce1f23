package host

import (
	"strconv"
	"time"
)

// State is the host's power state. The zero value is invalid.
type State uint8

// Power states.
const (
	_               State = iota
	Awake                 // apps and tasks run; the NIC forwards (D0)
	EnteringStandby       // quiescing channels, arming slots
	Standby               // asleep: the NIC guards hardware channels (D3)
	Resuming              // a wake was raised; the resume latency runs
	numState
)

// String returns a short lowercase name of s.
func (s State) String() string {
	switch s {
	case Awake:
		return "awake"
	case EnteringStandby:
		return "entering-standby"
	case Standby:
		return "standby"
	case Resuming:
		return "resuming"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// WakeReason is why the host left standby. The zero value is invalid.
type WakeReason uint8

// Wake reasons.
const (
	_ WakeReason = iota
	// WakeHardwarePush: a hardware slot's peer sent data.
	WakeHardwarePush
	// WakeHardwareReset: a hardware slot's peer closed (FIN) or reset
	// (RST) the connection.
	WakeHardwareReset
	// WakeKeepAliveTimeout: a hardware slot's peer stopped answering, or
	// the NIC woke for another slot condition (books or buffer full).
	WakeKeepAliveTimeout
	// WakeSoftwareKeepAlive: the host's own timer, to send the keep-alives
	// of software channels (coalesced by the planner).
	WakeSoftwareKeepAlive
	// WakeSoftwarePushCheck: the host's own timer, to collect pushes of
	// software channels (Config.PushCheckInterval).
	WakeSoftwarePushCheck
	// WakeUser: the user woke the host (Host.Wake).
	WakeUser
	// WakePattern: a frame matched one of the NIC's extra wake patterns.
	WakePattern
	// WakeReconnect: the host's own timer, to run the reset task of a
	// channel that lost its transport (the reconnect schedule).
	WakeReconnect
	// WakeNICLost: the NIC was lost (its daemon died, restarted or stopped
	// answering; the NIC's "nic-lost" wake of a NICWatcher), or it came
	// back after a loss: the host takes back what the NIC guarded, and
	// arms again once the NIC is back (nicwatch.go).
	WakeNICLost
	numWakeReason
)

var wakeReasonNames = [numWakeReason]string{
	WakeHardwarePush:      "hardware-push",
	WakeHardwareReset:     "hardware-reset",
	WakeKeepAliveTimeout:  "keep-alive-timeout",
	WakeSoftwareKeepAlive: "software-keep-alive",
	WakeSoftwarePushCheck: "software-push-check",
	WakeUser:              "user",
	WakePattern:           "pattern",
	WakeReconnect:         "reconnect",
	WakeNICLost:           "nic-lost",
}

// String returns a short lowercase name of r.
func (r WakeReason) String() string {
	if r > 0 && r < numWakeReason {
		return wakeReasonNames[r]
	}
	return "WakeReason(" + strconv.Itoa(int(r)) + ")"
}

// Power is the energy model: what each state draws. Entering standby and
// resuming draw AwakeMW; each resume costs ResumeMJ on top.
type Power struct {
	AwakeMW   float64 // milliwatts while awake, entering standby or resuming
	StandbyMW float64 // milliwatts in standby
	ResumeMJ  float64 // millijoules per resume (standby → awake)
	// SoftwareWake is how long a software wake keeps the host awake in
	// the all-software comparison estimate.
	SoftwareWake time.Duration
}

// Defaults of Power (a phone-class SoC; only ratios matter).
const (
	DefaultAwakeMW      = 1000.0
	DefaultStandbyMW    = 15.0
	DefaultResumeMJ     = 200.0
	DefaultSoftwareWake = 500 * time.Millisecond
)

func (p Power) withDefaults() Power {
	if p.AwakeMW == 0 {
		p.AwakeMW = DefaultAwakeMW
	}
	if p.StandbyMW == 0 {
		p.StandbyMW = DefaultStandbyMW
	}
	if p.ResumeMJ == 0 {
		p.ResumeMJ = DefaultResumeMJ
	}
	if p.SoftwareWake == 0 {
		p.SoftwareWake = DefaultSoftwareWake
	}
	return p
}

// energy returns the millijoules of spending the given times and resumes.
func (p Power) energy(awake, standby time.Duration, resumes uint64) float64 {
	return p.AwakeMW*awake.Seconds() + p.StandbyMW*standby.Seconds() + p.ResumeMJ*float64(resumes)
}

// Stats are the host's books.
type Stats struct {
	State State
	// Transitions counts state changes [from][to].
	Transitions [numState][numState]uint64
	// Wakes counts wakes by reason; Resumes is their sum.
	Wakes   [numWakeReason]uint64
	Resumes uint64
	// TimeIn is the time spent in each state, up to the Stats call.
	TimeIn [numState]time.Duration
	// EnergyMJ is the energy estimate of this host; SoftwareOnlyMJ the
	// estimate for the same timeline on a host without hardware slots
	// (every channel kept alive by coalesced software wakes), and
	// SoftwareOnlyWakes the wakes that host would have made.
	EnergyMJ          float64
	SoftwareOnlyMJ    float64
	SoftwareOnlyWakes uint64
	// KeepAlives counts the keep-alives the host sent itself: every one of
	// a software channel, and those of a hardware channel that fell due
	// within the tolerance of a wake (the NIC's schedule goes on from
	// them); Planner wakes are in Planner.
	KeepAlives uint64
	// Tasks counts task runs by trigger; Unbound counts triggers that
	// found no task bound to them.
	Tasks   [numTrigger]uint64
	Unbound uint64
	// StayedSoftware counts hardware channels left to software at an
	// entry to standby (socket not idle, NIC refused the slot).
	StayedSoftware uint64
	// Armed counts hardware slots armed; HandBacks sockets thawed.
	Armed, HandBacks uint64
	// HandBackErrors counts hardware channels that could not be taken back.
	HandBackErrors uint64
	// ReconnectAttempts counts the reset task runs (ResetTransportDisconnected)
	// of channels without a transport: the first at the disconnection,
	// the next ones at the reconnect schedule's wakes.
	ReconnectAttempts uint64
	// TLSAppKeepAlives counts the app keep-alives the host sent itself
	// inside TLS for hardware channels whose slot guards only the TCP
	// connection (also in KeepAlives).
	TLSAppKeepAlives uint64
	// The NIC watch (nicwatch.go). NICLosses counts the losses of the
	// NIC; NICBacks its returns, NICRestarts those as another instance
	// (nothing of the old one armed). BlindThaws counts sockets thawed
	// without the slot's books, exact because the slot could have put
	// no byte on the stream (TCP probes, or no keep-alive due yet);
	// Unrecovered the connections whose books were lost with the NIC
	// (closed, so that the reset task reconnects them); StaleSlots the
	// slots of the lease found still armed when the NIC came back.
	NICLosses, NICBacks, NICRestarts    uint64
	BlindThaws, Unrecovered, StaleSlots uint64
}

// Wake returns the count of wakes for reason r.
func (s *Stats) Wake(r WakeReason) uint64 {
	if r < numWakeReason {
		return s.Wakes[r]
	}
	return 0
}

// Transition returns the count of from → to transitions.
func (s *Stats) Transition(from, to State) uint64 {
	if from < numState && to < numState {
		return s.Transitions[from][to]
	}
	return 0
}

// Time returns the time spent in state st.
func (s *Stats) Time(st State) time.Duration {
	if st < numState {
		return s.TimeIn[st]
	}
	return 0
}

// AwakeTime returns the time the host drew awake power (awake, entering
// standby, resuming).
func (s *Stats) AwakeTime() time.Duration {
	return s.TimeIn[Awake] + s.TimeIn[EnteringStandby] + s.TimeIn[Resuming]
}
