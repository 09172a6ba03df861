#!/usr/bin/env bash
# Mounts benchmark (issue 3): the files engine against restic and borg on the 1.1 GB mixed tree.
# Usage: bench/files-tree.sh [--million | --million-only]    (env RUNS=3; data under bench/.work/files/, about 5 GB of disk;
# restores go to a fresh ext4 image on a loop device when run as root)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/require-tools.sh
require_tools restic:restic borg:borgbackup /usr/bin/time:time
# Build dist/ and the native addon (type errors elsewhere in the tree do not stop tsc from emitting).
test -f build/Release/bunker_fs.node || npx --yes node-gyp rebuild >/dev/null
npx tsc -p tsconfig.build.json >/dev/null 2>&1 || true
test -f dist/engines/files/index.js || { echo "dist/engines/files/index.js missing: npm run build failed" >&2; exit 1; }
restic version; borg --version
exec node bench/files-tree.mjs "$@"
