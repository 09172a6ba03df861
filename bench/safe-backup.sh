#!/usr/bin/env bash
# Safe backup under load (issue 8): pause and added latency of held requests, then the gateway's own
# overhead when not holding. Needs PostgreSQL, Redis, pgbench and wrk (installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/require-tools.sh
require_tools pgbench:postgresql-contrib wrk:wrk
source bench/lib/build-dist.sh
build_dist
node bench/safe-backup.mjs
node bench/gateway-overhead.mjs
