#!/usr/bin/env bash
# PostgreSQL engine benchmark (issue 5): pgbench scale 30 (~450 MB) on the local server.
# Same run: Bunker backup vs `pg_dump -Fd -j2`, new bytes of a second backup of the unchanged database,
# Bunker restore vs `pg_restore -j2` of that directory dump.
# Usage: bench/postgresql-pgbench.sh      (env: SCALE=30, PGURL=postgresql://postgres@127.0.0.1:5432)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/require-tools.sh
require_tools pgbench:postgresql-contrib pg_dump:postgresql-client
source bench/lib/build-dist.sh
build_dist
pg_dump --version
exec node bench/postgresql-pgbench.mjs "$@"
