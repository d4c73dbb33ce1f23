#!/bin/bash
# scripts/fleet.sh: the fleet benchmark of docs/benchmarks.md. In a network
# namespace of its own (removed on exit), it starts mosquitto on lo and runs
# `standbynic fleet` against it twice with the same seed: every channel on a
# hardware slot (--hw-slots 2-2), then none (0-0). Each run is SHARDS fleet
# processes at once (--shard i/SHARDS), merged by `standbynic fleet merge`;
# the merged tables are printed. Devices dial from 127.1.0.0/16, one
# address each. Root is needed (ip netns). The broker and each shard need
# one fd per channel: the machine's RLIMIT_NOFILE hard limit bounds the size.
#
# With -p line the server is `standbynic push-server` (the line protocol,
# pushes through its HTTP API) instead of mosquitto.
#
#   scripts/fleet.sh [-n DEVICES] [-s SHARDS] [-d DURATION] [-o DIR] [-p mqtt|line] [-- FLEET FLAGS]
#   (defaults: 10000 devices, 2 shards, 10m, mqtt)
set -eu
devices=10000 shards=2 duration=10m out=fleet-bench proto=mqtt
while getopts n:s:d:o:p: f; do
	case $f in
	n) devices=$OPTARG ;; s) shards=$OPTARG ;; p) proto=$OPTARG ;; d) duration=$OPTARG ;; o) out=$OPTARG ;;
	*) echo "usage: $0 [-n DEVICES] [-d DURATION] [-o DIR]" >&2; exit 2 ;;
	esac
done
shift $((OPTIND-1))
command -v mosquitto >/dev/null || { echo "fleet.sh: mosquitto missing (Debian package mosquitto)" >&2; exit 1; }
ns=sbn-fleet-$$
tmp=$(mktemp -d)
bin=$tmp/standbynic
cleanup() {
	[ -n "${mpid:-}" ] && kill "$mpid" 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
go build -o "$bin" ./cmd/standbynic
ip netns add "$ns"
ip -n "$ns" link set lo up
cat >"$tmp/mosquitto.conf" <<CONF
user root
persistence false
allow_anonymous true
log_dest file $tmp/mosquitto.log
log_type error
log_type warning
max_connections -1
listener 1883 127.0.0.1
CONF
if [ "$proto" = line ]; then
	ip netns exec "$ns" sh -c "ulimit -n \$(ulimit -Hn); exec $bin push-server --tcp 127.0.0.1:1883 --ws 127.0.0.1:7001 --http 127.0.0.1:7002 --log-level warn" >"$tmp/push-server.log" 2>&1 &
	server="--protocol line --broker 127.0.0.1:1883 --push-api 127.0.0.1:7002"
else
	ip netns exec "$ns" sh -c "ulimit -n \$(ulimit -Hn); exec mosquitto -c $tmp/mosquitto.conf" &
	server="--broker 127.0.0.1:1883"
fi
mpid=$!
i=0
until ip netns exec "$ns" bash -c 'exec 3<>/dev/tcp/127.0.0.1/1883' 2>/dev/null || [ $i -ge 50 ]; do i=$((i+1)); sleep 0.1; done
mkdir -p "$out"
for slots in 2-2 0-0; do
	echo "== $devices devices, hardware slots $slots, $duration" >&2
	pids=
	for i in $(seq 0 $((shards-1))); do
		quiet=--quiet
		[ "$i" = 0 ] && quiet=
		ip netns exec "$ns" sh -c "ulimit -n \$(ulimit -Hn); exec $bin fleet $server --sources 127.1.0.0/16 \
			--devices $devices --shard $i/$shards --seed 1 --hw-slots $slots --duration $duration $quiet --out $out/hw-$slots/shard-$i $*" &
		pids="$pids $!"
	done
	for p in $pids; do wait "$p"; done
	"$bin" fleet merge --out "$out/hw-$slots/merged" "$out/hw-$slots"
	sed -n '/^[0-9]* of/p;/^| metric/,/^| goroutines/p' "$out/hw-$slots/merged/report.md"
done
[ "$proto" = line ] || grep -v '^$' "$tmp/mosquitto.log" | tail -5
