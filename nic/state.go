package nic

// PowerState is the device's power state. The zero value is invalid.
//
//	      Sleep()                 (ok)
//	D0 ───────────▶ Arming ───────────▶ D3
//	▲                  │ (error)         │ wake decision / Wake()
//	│◀─────────────────┘                 ▼
//	└──────────────────────────────── Waking
//	            Resume()
//
// Close moves any state to Closed.
type PowerState uint8

const (
	stateInvalid PowerState = iota
	// D0: awake, forwarding both ways, learning tracked connections.
	D0
	// Arming: Sleep is compiling the wake table and attaching the
	// prefilter; frames are still forwarded.
	Arming
	// D3: asleep; nothing reaches the host, the offload datapath runs.
	D3
	// Waking: a wake was raised; wire frames are buffered for the host,
	// host frames are forwarded, armed slots keep running.
	Waking
	// Closed: the device is closed.
	Closed
)

var stateNames = [...]string{
	stateInvalid: "invalid",
	D0:           "D0",
	Arming:       "arming",
	D3:           "D3",
	Waking:       "waking",
	Closed:       "closed",
}

// String returns the state's name.
func (s PowerState) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "invalid"
}

// transitionCounter returns the counter of the transition from→to, or
// false when the transition is not allowed.
func transitionCounter(from, to PowerState) (counterID, bool) {
	switch {
	case from == D0 && to == Arming:
		return cPmD0ToArming, true
	case from == Arming && to == D3:
		return cPmArmingToD3, true
	case from == Arming && to == D0:
		return cPmArmingToD0, true
	case from == D3 && to == Waking:
		return cPmD3ToWaking, true
	case from == Waking && to == D0:
		return cPmWakingToD0, true
	case to == Closed && from != Closed:
		return cPmToClosed, true
	}
	return 0, false
}
