#!/usr/bin/env bash
# A bounded soak of the daemons (issue 13): "standbynic nic" and
# "standbynic host" as child processes in a veth lab, 8 hardware and 200
# software channels, 1 % loss and FIFO jitter (1 ms ± 200 µs) on the wire,
# six pushes a second, one NIC restart (SIGKILL) half-way. It fails on a
# lost or duplicated push, or when the host's goroutines, fds or RSS grow;
# the samples are printed. Needs root (network namespaces, TCP_REPAIR).
#
#   scripts/soak.sh                 10 minutes
#   scripts/soak.sh -d 3m           shorter (any Go duration)
#   scripts/soak.sh -d 3m -s 15s    sample every 15 s (default 10 s)
set -euo pipefail
duration=10m
sample=10s
while getopts "d:s:h" o; do
	case $o in
	d) duration=$OPTARG ;;
	s) sample=$OPTARG ;;
	*) sed -n '2,12p' "$0"; exit 2 ;;
	esac
done
cd "$(dirname "$0")/.."
# go test's own timeout: the soak, then 5 minutes for set-up and the drain
# of the last pushes (durations as 90s, 3m, 1h30m).
secs=0
rest=$duration
while [[ $rest =~ ^([0-9]+)([hms])(.*)$ ]]; do
	n=${BASH_REMATCH[1]}
	case ${BASH_REMATCH[2]} in h) n=$((n * 3600)) ;; m) n=$((n * 60)) ;; esac
	secs=$((secs + n))
	rest=${BASH_REMATCH[3]}
done
if [[ -n $rest || $secs -eq 0 ]]; then
	echo "soak.sh: -d $duration: want a duration of h, m and s (e.g. 3m, 90s)" >&2
	exit 2
fi
exec go test -tags soak -count=1 -v -run '^TestIntegrationSoak$' -timeout "$((secs + 300))s" ./cmd/standbynic/ \
	-args -soak.duration="$duration" -soak.sample="$sample"
