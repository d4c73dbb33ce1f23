// Package slotmgr owns the fixed pool of hardware keep-alive slots and the
// unbounded software slots of the host: admission policy, placement with
// fallback, the ControlChannelTrigger status codes, priorities, eviction,
// promotion, and the coalescing of software keep-alives into shared host
// wakes. It knows nothing of sockets or frames, reads no clock of its own
// (a Clock stamps events; the Planner is told the time) and starts no
// goroutine.
//
// # Placement
//
// Pool.Request takes a Request (channel id, app, requested ResourceType,
// keep-alive interval, priority) and returns a Result whose Status carries
// the Windows ControlChannelTriggerStatus numbering:
//
//	Request ──malformed (Channel, App, Resource, Interval)──────────> error
//	   │
//	   ├─ app not admitted and no room ───────────────────────────> PolicyError "app X not permitted"
//	   ├─ app holds AppChannelQuota channels ─────────────────────> PolicyError "quota 2 reached for app X"
//	   ├─ interval outside [Min, Max]×IntervalUnit ───────────────> PolicyError "interval 5m below minimum 15m"
//	   │
//	   ├─ RequestHardwareSlot
//	   │    ├─ app holds AppHardwareQuota hardware slots ──────────> PolicyError "hardware quota 1 reached for app X"
//	   │    ├─ a hardware slot free ───────────────────────────────> HardwareSlotAllocated
//	   │    ├─ pool full, lowest holder ranks below the request:
//	   │    │     holder ──Evicted──> software; request ──────────> HardwareSlotAllocated
//	   │    ├─ pool full, Strict ───────────────────────────────────> SystemError "hardware pool full (4/4)"
//	   │    └─ pool full, not Strict ── falls through to software, Reason "hardware pool full (4/4)"
//	   │
//	   └─ software slot
//	        ├─ system EnteringStandby or Standby ─────────────────> ServiceUnavailable
//	        └─ otherwise ──────────────────────────────────────────> SoftwareSlotAllocated
//
// Rank: a higher Priority wins; between equal priorities the older request
// wins. Eviction takes the lowest-ranked hardware holder, and only for a
// request that strictly outranks it. The evicted channel keeps a software
// slot (whatever the system state: it was admitted, and its host must now
// wake for it) and waits for promotion.
//
// Strict mode models Windows on connected-standby systems, where only
// hardware slots deliver triggers in standby, so a hardware request that
// cannot be met fails instead of silently degrading. The failure is
// SystemError, Windows' "configuring the hardware slot failed" (Android
// says "insufficient resources: all hardware slots are in use");
// PolicyError is kept for what the policy refuses (apps, quotas,
// intervals).
//
// # A channel's life
//
//	           Request
//	              │
//	    ┌─────────┴─────────┐
//	    v       Evicted      v
//	[hardware] ─────────> [software]
//	    ^  <───────────────   │
//	    │      Promoted       │
//	    │                     │     MarkDisconnected (frees the slot; a
//	    └───────┬─────────────┘     hardware slot promotes another channel)
//	            v
//	 [transport-disconnected] ──Reconnect──> placed again as a new Request
//	            │                            (failure: stays disconnected)
//	  Release (from any state; a freed hardware slot promotes)
//	            v
//	         [gone]
//
// Promotion: when a hardware slot frees up (Release or MarkDisconnected of
// a hardware channel), it goes to the highest-ranked software channel that
// had asked for hardware and whose app is under AppHardwareQuota. Software
// channels that asked for software are never promoted.
//
// Owners learn of Promoted, Evicted and Disconnected through an unbounded
// event queue: Notify signals, DrainEvents empties it. Nothing is dropped.
//
// # Policy knobs (Config)
//
//	HardwareSlots     N, from the NIC's capabilities, 1–64 (default 4)
//	PermittedApps     lock-screen analogue, default 7; apps are admitted in
//	                  order of registration (Permit, or their first placed
//	                  request) unless Apps lists them explicitly
//	AppChannelQuota   channels per app (0: no limit)
//	AppHardwareQuota  hardware slots per app (0: no limit)
//	IntervalUnit      default time.Minute; tests and the demo use time.Second
//	Min/MaxInterval   in IntervalUnit, default 15 and 1439 (Windows)
//	Strict            fail instead of falling back when the pool is full
//
// SetSystemState(EnteringStandby) makes software placements answer
// ServiceUnavailable until SetSystemState(Awake).
//
// # Software keep-alives
//
// The Planner schedules the host's own wakes for software channels. A
// channel's keep-alive may be sent early by up to min(Tolerance,
// Interval/2) so that it shares a wake, never later than its interval:
//
//	NextWake(now) ── at = max(now, earliest due); serves every channel
//	                 with due ≤ at + its tolerance
//	host sleeps until at (or wakes earlier for a push: Wake(now) serves
//	                 what is due by then)
//	Wake(at) ─────── sends those keep-alives, last = at, counts the wake
//
// With Coalesce off every channel has its own timer (the baseline). Counters
// give wakes, keep-alives, and how many were sent early or late. Due(id)
// says when a channel's next keep-alive is due, so a host that hands the
// channel to a NIC slot can keep its schedule there.
//
// With coalescing the wake rate is bounded below by the shortest software
// interval: hardware slots go by priority, so a short-interval channel left
// on software sets the host's wake floor (BenchmarkHostWakes shows it).
package slotmgr
