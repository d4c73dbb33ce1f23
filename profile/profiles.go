package profile

import (
	"time"

	"github.com/standbynic/standbynic/offload"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// Profile names.
const (
	GenericName = "generic"
	AndroidAPF  = "android-apf"
	BroadcomMKA = "broadcom-mkeepalive"
	InfineonTKO = "infineon-tko"
	NL80211TCP  = "nl80211-tcp"
	NDIS        = "ndis"
	RealWoW     = "realwow"
)

// patterns returns the emulator's pattern limits with the given bitmap
// limits and no connection-table limit beyond the slots.
func patterns(bitmaps, size, offset, syn, magic int) wp.Capabilities {
	c := wp.DefaultCapabilities()
	c.MaxBitmapPatterns, c.MaxBitmapSize, c.MaxBitmapOffset = bitmaps, size, offset
	c.MaxSYNPatterns, c.MaxMagicPatterns = syn, magic
	if magic == 0 {
		c.MaxPasswordLen = 0
	}
	c.MaxPatterns = c.MaxConnPatterns + c.MaxSYNPatterns + c.MaxBitmapPatterns + c.MaxMagicPatterns
	return c
}

// androidWiFi are the Wi-Fi HAL's return codes (wifi_hal.h).
var (
	wifiNotSupported = Code{-3, "WIFI_ERROR_NOT_SUPPORTED"}
	wifiInvalidArgs  = Code{-5, "WIFI_ERROR_INVALID_ARGS"}
	wifiTooMany      = Code{-8, "WIFI_ERROR_TOO_MANY_REQUESTS"}
)

var all = []*Profile{
	{
		Name:     GenericName,
		Part:     "the emulator's own device: patched templates with timestamps, replies absorbed and classified, retries and dead-peer detection, every kind and family",
		Sources:  "prior-art.md (the union of the parts below)",
		Families: BothFamilies,
	},
	{
		Name:        AndroidAPF,
		Part:        "Android SocketKeepalive TCP offload: the framework builds the ACK once, the vendor firmware sends it, an APF filter drops the exact reply",
		Sources:     "AOSP Connectivity (SocketKeepalive, KeepaliveTracker, TcpKeepalivePacketData) and NetworkStack (ApfFilter)",
		Slots:       3, // Wi-Fi offers at least 3 (cellular 1); 2 of them are reserved for privileged callers, 2 per app
		Families:    IPv4,
		Kinds:       []offload.Kind{offload.KindTCPProbe},
		MinInterval: 10 * time.Second,
		MaxInterval: 3600 * time.Second,
		Firmware: offload.Firmware{
			Replay: true, NoTimestamps: true, DropOnly: true, NoLiveness: true, EndOnData: true,
		},
		Errors: Errors{
			NoSlot:   Code{-32, "ERROR_INSUFFICIENT_RESOURCES"},
			Family:   Code{-21, "ERROR_INVALID_IP_ADDRESS"},
			Kind:     Code{-30, "ERROR_UNSUPPORTED"},
			Interval: Code{-24, "ERROR_INVALID_INTERVAL"},
			Length:   Code{-23, "ERROR_INVALID_LENGTH"},
		},
		ReasonNames: map[offload.Reason]string{
			offload.ReasonData:   "DATA_RECEIVED",
			offload.ReasonFIN:    "DATA_RECEIVED",
			offload.ReasonRST:    "DATA_RECEIVED",
			offload.ReasonPassed: "passed by APF",
		},
	},
	{
		Name:      BroadcomMKA,
		Part:      "Broadcom mkeep_alive through the Android Wi-Fi HAL: an opaque IP packet replayed byte for byte every period; the reply is left to the host's packet filter (modelled drop-only)",
		Sources:   "Android Wi-Fi HAL (wifi_hal.h start_sending_offloaded_packet), Broadcom bcmdhd wl_mkeep_alive_pkt",
		Slots:     3, // mkeep_alive ids 1–3
		Families:  BothFamilies,
		Kinds:     []offload.Kind{offload.KindTCPProbe},
		MaxPacket: 256,
		Firmware:  offload.Firmware{Replay: true, DropOnly: true, NoLiveness: true},
		Errors: Errors{
			NoSlot: wifiTooMany, Family: wifiNotSupported, Kind: wifiNotSupported,
			Interval: wifiInvalidArgs, Length: wifiInvalidArgs,
		},
	},
	{
		Name: InfineonTKO,
		Part: "Infineon AIROC TCP keep-alive offload: 4 connections (the most recently used are offloaded); the host builds the request (an IPv4 ACK at SND.NXT−1, no TCP options, IP ID 0) and the expected response, the firmware sends the request as built, retries, and reports a status per connection",
		// lpa's cy_whd_tko_api.c: ip_addr_type 0 (IPv4), prep_packet
		// builds a bare 20-byte TCP header, 20 s / 3 s / 3 defaults.
		Sources:         "Infineon wifi-host-driver (whd_wifi_api.h: whd_tko_param, whd_tko_max_assoc) and lpa middleware (cy_whd_tko_api.c)",
		Slots:           4,
		Families:        IPv4,
		Kinds:           []offload.Kind{offload.KindTCPProbe},
		ARPOffloads:     8,
		Patterns:        patterns(8, 128, 1500, 0, 1),
		Firmware:        offload.Firmware{Replay: true, NoTimestamps: true, ACKFlagStatus: true},
		Admission:       MostRecent,
		DefaultInterval: 20 * time.Second,
		RetryInterval:   3 * time.Second,
		RetryCount:      3,
		StatusNames: map[offload.Status]string{
			offload.StatusNormal:          "NORMAL",
			offload.StatusNoResponse:      "NO_RESPONSE",
			offload.StatusNoACKFlag:       "NO_TCP_ACK_FLAG",
			offload.StatusUnexpectedFlags: "UNEXPECT_TCP_FLAG",
			offload.StatusBadACK:          "SEQ_NUM_INVALID",
			offload.StatusBadSeq:          "REMOTE_SEQ_NUM_INVALID",
			offload.StatusDataWaiting:     "TCP_DATA",
		},
		Errors: Errors{Kind: Code{Name: "WHD_UNSUPPORTED"}, Length: Code{Name: "WHD_BADARG"}, Family: Code{Name: "WHD_BADARG"}},
	},
	{
		Name:       NL80211TCP,
		Part:       "Linux nl80211 WoWLAN TCP connection (iwlwifi): the device's own IPv4 connection sends a small data payload each interval and wakes on a wake payload or on connection loss",
		Sources:    "include/uapi/linux/nl80211.h (NL80211_WOWLAN_TCP_*), iwlwifi wowlan_tcp limits",
		Slots:      1,
		Families:   IPv4,
		Kinds:      []offload.Kind{offload.KindPayload},
		MaxRequest: 10,
		MaxReply:   74,
		Patterns:   patterns(20, 128, 128, 0, 1),
		Errors:     Errors{NoSlot: Code{-16, "EBUSY"}, Family: Code{-22, "EINVAL"}, Kind: Code{-22, "EINVAL"}, Interval: Code{-22, "EINVAL"}, Length: Code{-22, "EINVAL"}},
		ReasonNames: map[offload.Reason]string{
			offload.ReasonKeepAliveTimeout: "NL80211_WOWLAN_TRIG_WAKEUP_TCP_CONNLOST",
			offload.ReasonFIN:              "NL80211_WOWLAN_TRIG_WAKEUP_TCP_CONNLOST",
			offload.ReasonRST:              "NL80211_WOWLAN_TRIG_WAKEUP_TCP_CONNLOST",
			offload.ReasonData:             "NL80211_WOWLAN_TRIG_WAKEUP_TCP_MATCH",
			offload.ReasonNoTokens:         "NL80211_WOWLAN_TRIG_WAKEUP_TCP_NOMORETOKENS",
		},
	},
	{
		Name:           NDIS,
		Part:           "Windows NDIS power management: bitmap, magic and TCP-SYN wake patterns with a published count and size, ARP and ≥ 2 NS offloads, the wake packet saved (≥ min(length, 128) B) and indicated before the link state",
		Sources:        "Microsoft NDIS docs (NDIS_PM_CAPABILITIES, NDIS_PM_WOL_PATTERN, NDIS_PM_PROTOCOL_OFFLOAD, NDIS_STATUS_PM_WAKE_REASON)",
		Families:       BothFamilies,
		WakePacketSave: 128,
		ARPOffloads:    1,
		NSOffloads:     2,
		Patterns:       patterns(16, 128, 1514, 8, 1),
	},
	{
		Name:          RealWoW,
		Part:          "Realtek RealWoW and similar: one keep-alive to a cloud server with an expected-ACK pattern and a lost-ACK limit; what does not match the pattern wakes",
		Sources:       "Realtek RealWoW! remote wake technology notes; prior-art.md",
		Slots:         1,
		Families:      IPv4,
		Kinds:         []offload.Kind{offload.KindTCPProbe, offload.KindPayload},
		MaxRequest:    64,
		MaxReply:      64,
		RetryInterval: 2 * time.Second, // the lost-ACK limit is RetryCount
		RetryCount:    3,
		Patterns:      patterns(8, 128, 1514, 0, 1),
		Errors:        Errors{NoSlot: Code{Name: "REALWOW_SERVER_IN_USE"}},
		StatusNames:   map[offload.Status]string{offload.StatusNoResponse: "ACK_LOST"},
	},
}
