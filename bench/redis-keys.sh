#!/usr/bin/env bash
# Redis engine benchmark: 1,000,000 keys (~160 MB in memory) on a throwaway redis-server.
# Bunker's backup vs `redis-cli --rdb` (same server, same run), and Bunker's restore vs its backup.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/require-tools.sh
require_tools redis-server:redis-server redis-cli:redis-tools
# Build dist/ (type errors elsewhere in the tree do not stop tsc from emitting the engine).
npx tsc -p tsconfig.build.json >/dev/null 2>&1 || true
test -f dist/engines/redis/index.js || { echo "dist/engines/redis/index.js missing: the build failed" >&2; exit 1; }
node bench/redis-keys.mjs "$@"
