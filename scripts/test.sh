#!/usr/bin/env bash
# The project's test command (README.md). Extra arguments go to `go test`,
# e.g. ./scripts/test.sh -race. Privileged (TestIntegration*) tests run
# when the caller is root or has CAP_NET_ADMIN and CAP_NET_RAW; elsewhere
# they skip with a message naming the capability.
set -euo pipefail
cd "$(dirname "$0")/.."
exec go test -count=1 -timeout 20m "$@" ./...
