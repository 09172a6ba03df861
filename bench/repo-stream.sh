#!/usr/bin/env bash
# Repository stream benchmark (issue 2): Bunker vs restic vs borg on a ~1.1 GB deterministic tar.
# Usage: bench/repo-stream.sh     (env RUNS=3 rounds, medians; about 4 GB of disk under bench/.work/repo-stream/)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/require-tools.sh
require_tools restic:restic borg:borgbackup /usr/bin/time:time
source bench/lib/build-dist.sh
build_dist
restic version; borg --version
exec node bench/repo-stream.mjs "$@"
