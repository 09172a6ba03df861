#!/usr/bin/env bash
# Mounts benchmark (issue 3): the files engine against restic and borg on the 1.1 GB mixed tree.
# Usage: bench/files-tree.sh [--million | --million-only]    (env RUNS=3; data under bench/.work/files/, about 5 GB of disk;
# restores go to a fresh ext4 image on a loop device when run as root)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/require-tools.sh
require_tools restic:restic borg:borgbackup /usr/bin/time:time
source bench/lib/build-dist.sh
build_dist
restic version; borg --version
exec node bench/files-tree.mjs "$@"
