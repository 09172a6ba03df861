#!/usr/bin/env bash
# Redis engine benchmark: 1,000,000 keys (~160 MB in memory) on a throwaway redis-server.
# Bunker's backup vs `redis-cli --rdb` (same server, same run), and Bunker's restore vs its backup.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/require-tools.sh
require_tools redis-server:redis-server redis-cli:redis-tools
source bench/lib/build-dist.sh
build_dist
node bench/redis-keys.mjs "$@"
