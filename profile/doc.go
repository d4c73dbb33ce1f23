// Package profile describes shipping keep-alive offloads as data the
// emulated NIC can run: Android APF + SocketKeepalive, Broadcom
// mkeep_alive, Infineon AIROC TCP keep-alive offload, Linux nl80211 WoWLAN
// TCP (iwlwifi), Windows NDIS power management and Realtek RealWoW, next
// to the emulator's own "generic" device.
//
// A Profile is capabilities (slot count, address families, keep-alive
// kinds, interval bounds, payload limits, wake-packet save buffer, ARP/NS
// offloads, wake-pattern limits) plus behaviour, which is a handful of
// switches of the offload engine (offload.Firmware: replayed templates, no
// timestamp option, drop-only reply filter, no dead-peer detection, the
// NO_TCP_ACK_FLAG status, end on data), the admission policy (refuse when
// full, or keep the most recently used slots), the retry defaults, and
// the part's own names for statuses, wake reasons and errors. There is no
// datapath here: the nic and offload packages run every profile.
//
// A request a profile cannot honour is refused by Check with an *Error
// carrying the part's own code and name (Android ERROR_INVALID_IP_ADDRESS
// −21 for an IPv6 connection, ERROR_INSUFFICIENT_RESOURCES −32 when the
// slots are full); errors.Is(err, ErrRefused) holds for all of them, so
// the control API and the host's statuses can map them.
//
// Time scale: the parts' interval bounds are real (Android 10–3600 s,
// Infineon 20 s); Scaled divides every duration of a profile so tests and
// the outcome table run in seconds.
//
// The facts come from public sources, cited in docs/profiles.md.
package profile
