#!/usr/bin/env bash
# SQLite engine benchmark: Bunker's sqlite backup vs `sqlite3 .backup` on the same file in the same run,
# restore vs backup, and what a backup costs a writing application (pin time, writer commit latency),
# in WAL and rollback-journal mode. The tools compared: sqlite3 .backup, then restic on the copy. SIZE_MB (default 256) sets the database size, RUNS (default 3) the repeats.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/require-tools.sh
require_tools sqlite3:sqlite3 restic:restic
source bench/lib/build-dist.sh
build_dist
node bench/sqlite-engine.mjs "$@"
