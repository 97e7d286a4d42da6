#!/usr/bin/env bash
# Installs what the remote-execution test cluster needs (tests/remote_exec/cluster/README.md):
# BuildGrid 0.9.1 in a Python 3.13 virtualenv, and the PostgreSQL server binaries its scheduler
# needs. Idempotent: a second run with everything in place only checks.
set -euo pipefail

BUILDGRID_VERSION=0.9.1
venv="${TASKRUN_BUILDGRID_VENV:-$HOME/.cache/taskrun-buildgrid/venv}"

die() { echo "install.sh: $*" >&2; exit 1; }

# BuildGrid 0.9.1 needs Python >= 3.13.
find_python() {
  local p
  for p in python3.13 python3.14; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import sys; assert sys.version_info >= (3, 13)' 2>/dev/null; then
      command -v "$p"; return 0
    fi
  done
  for p in "${PYENV_ROOT:-/root/.pyenv}"/versions/3.1[3-9]*/bin/python3.1[3-9]; do
    if [ -x "$p" ] && "$p" -c 'import sys; assert sys.version_info >= (3, 13)' 2>/dev/null; then
      echo "$p"; return 0
    fi
  done
  return 1
}

if [ -x "$venv/bin/bgd" ] && "$venv/bin/python" -c "
import importlib.metadata as m, sys
sys.exit(m.version('buildgrid') != '$BUILDGRID_VERSION')" 2>/dev/null; then
  echo "buildgrid $BUILDGRID_VERSION already in $venv"
else
  python=$(find_python) ||
    die "no Python >= 3.13 found (on PATH as python3.13, or under pyenv's versions/3.13*); BuildGrid $BUILDGRID_VERSION needs one"
  echo "creating $venv with $python"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "buildgrid==$BUILDGRID_VERSION"
  "$venv/bin/bgd" --help >/dev/null || die "bgd does not run from $venv"
fi

# PostgreSQL server binaries (initdb, pg_ctl, postgres) for BuildGrid's SQL scheduler.
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/initdb" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "installing the PostgreSQL server"
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql; } ||
      die "could not install postgresql with apt-get"
  else
    die "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin; install the 'postgresql' package (as root)"
  fi
fi
[ -x "$(pg_bin)/initdb" ] || die "no initdb under /usr/lib/postgresql/*/bin after installing"
# As root the cluster runs as the postgres user (initdb refuses root).
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  die "running as root but there is no 'postgres' user to run PostgreSQL as"
fi
echo "PostgreSQL server binaries in $(pg_bin)"

# The migrated database template the clusters copy (cluster.py makes it on first use otherwise).
"$venv/bin/python" "$(dirname "$0")/cluster.py" --prepare >/dev/null ||
  die "could not prepare the database template (cluster.py --prepare)"
echo "database template ready"
