#!/usr/bin/env bash
# The gateway's p50/p99 latency overhead when not holding (wrk, direct vs through the gateway).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/require-tools.sh
require_tools wrk:wrk
source bench/lib/build-dist.sh
build_dist
node bench/gateway-overhead.mjs
