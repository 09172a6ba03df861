#!/usr/bin/env bash
# MariaDB engine benchmark (issue 6): sysbench oltp_read_write --tables=8 --table-size=250000 (~500 MB)
# on the local server. Same run: Bunker backup vs `mariadb-dump --single-transaction`, new bytes of a
# second backup of the unchanged database, Bunker restore vs `mariadb < dump.sql`. Each step also
# prints the CPU-seconds of Bunker, the client tools and the local server (wall times are noisy).
# The tools alternate RUNS times (default 3); the ratios are of the medians.
# Usage: bench/mariadb-sysbench.sh      (env: RUNS=3 TABLES=8 TABLE_SIZE=250000 JOBS=<engine default>)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/require-tools.sh
require_tools sysbench:sysbench mariadb-dump:mariadb-client
source bench/lib/build-dist.sh
build_dist
mariadb-dump --version
exec node bench/mariadb-sysbench.mjs "$@"
