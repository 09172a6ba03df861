#!/usr/bin/env bash
# The gateway's p50/p99 latency overhead when not holding (wrk, direct vs through the gateway).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/require-tools.sh
require_tools wrk:wrk
# Build dist/ (type errors elsewhere in the tree do not stop tsc from emitting the gateway).
npx tsc -p tsconfig.build.json >/dev/null 2>&1 || true
test -f dist/gateway/index.js || { echo "dist/gateway/index.js missing: npm run build failed" >&2; exit 1; }
node bench/gateway-overhead.mjs
