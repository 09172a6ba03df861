#!/usr/bin/env bash
# Repository stream benchmark (issue 2): Bunker vs restic vs borg on a ~1.1 GB deterministic tar.
# Usage: bench/repo-stream.sh     (env RUNS=3 rounds, medians; about 4 GB of disk under bench/.work/repo-stream/)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/require-tools.sh
require_tools restic:restic borg:borgbackup /usr/bin/time:time
# Type errors elsewhere in the shared tree do not stop tsc from emitting dist/.
npx tsc -p tsconfig.build.json >/dev/null 2>&1 || true
test -f dist/repo/index.js || { echo "dist/repo/index.js missing: npm run build failed" >&2; exit 1; }
restic version; borg --version
exec node bench/repo-stream.mjs "$@"
