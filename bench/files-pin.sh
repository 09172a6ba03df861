#!/usr/bin/env bash
# Files engine pin() on the 1.1 GB mixed tree (safe-backup hold time of a mount). Usage: bench/files-pin.sh
# Data under bench/.work/files/ (the mixed tree, a copy of it and a repository: about 3.5 GB).
set -euo pipefail
cd "$(dirname "$0")/.."
test -f build/Release/bunker_fs.node || npx --yes node-gyp rebuild >/dev/null
npx tsc -p tsconfig.build.json >/dev/null 2>&1 || true
test -f dist/engines/files/index.js || { echo "dist/engines/files/index.js missing: npm run build failed" >&2; exit 1; }
exec node bench/files-pin.mjs "$@"
