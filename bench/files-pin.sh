#!/usr/bin/env bash
# Files engine pin() on the 1.1 GB mixed tree (safe-backup hold time of a mount). Usage: bench/files-pin.sh
# Data under bench/.work/files/ (the mixed tree, a copy of it and a repository: about 3.5 GB).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/build-dist.sh
build_dist
exec node bench/files-pin.mjs "$@"
