package bench

// Row names of the lab scenarios. They live here, not beside the Linux-only
// code that measures them, so the report's checks build on every system.
const (
	implD3       = "standbynic D3 datapath (absorb)"
	implTPacket  = "plain TPACKET_V3 ring loop"
	implRecv     = "recvfrom loop"
	implD0       = "standbynic D0 forwarding"
	implBridge   = "Linux bridge"
	implWakeSend = "standbynic: send on srv0 → wake event"
	implWakeRx   = "standbynic: kernel rx timestamp on wire0 → wake event"
	implWakeImm  = "standbynic, immediate wire port: kernel rx timestamp on wire0 → wake event"
	implRingRead = "TPACKET_V3 ring read: send → frame read"
	implRecvRead = "recvfrom: send → frame read"
	implHostWake = "host: push's rx timestamp on wire0 → wake event"
	implHostTask = "host: push's rx timestamp on wire0 → push task start"
)
