# Shared by scripts/run-app, scripts/run-tests and .ci/run (sourced, not run).
# shellcheck shell=bash

say() { printf '== %s\n' "$*"; }
die() { printf 'run: %s\n' "$*" >&2; exit 1; }

# apt-get install, as root or through sudo; apt-get update once, before the first install.
apt_updated=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "no apt-get here: install $* yourself (see the README)"
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "installing $* needs root or sudo"
    sudo=(sudo)
  fi
  if [ "$apt_updated" = 0 ]; then
    "${sudo[@]}" apt-get update -q || die "apt-get update failed"
    apt_updated=1
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" || die "apt-get install $* failed"
}

# The interpreter to build on: $PYTHON, else python3, else python; 3.11 or newer.
base_python() {
  local candidate="${PYTHON:-}"
  if [ -z "$candidate" ]; then
    if command -v python3 >/dev/null 2>&1; then candidate=python3
    elif command -v python >/dev/null 2>&1; then candidate=python
    else die "no python3 found: install Python 3.11 (Debian: apt-get install python3)"
    fi
  fi
  "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
    || die "$candidate is not Python 3.11 or newer; set PYTHON=/path/to/python3.11"
  printf '%s\n' "$candidate"
}

# make_venv PYTHON DIR: a fresh virtual environment (Debian's Python needs python3-venv for it).
make_venv() {
  if ! "$1" -m venv --clear "$2" >/dev/null 2>&1; then
    rm -rf "$2"
    apt_install python3-venv
    "$1" -m venv --clear "$2" || die "could not create the virtual environment $2 with $1"
  fi
}

# Sets PY to the python that pip installs into and the tools run from: the base interpreter's own
# environment (an active virtual environment, pyenv, conda...), or, when that is a system Python
# pip may not install into (PEP 668: Debian's /usr/bin/python3), .venv in the checkout, created on
# first use.
pick_python() {
  local base
  base="$(base_python)"
  if "$base" - <<'PY'
import os, sys, sysconfig
managed = os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))
sys.exit(0 if managed and sys.prefix == sys.base_prefix else 1)
PY
  then
    if [ ! -x .venv/bin/python ]; then
      say "$base is the system's Python (externally managed): creating .venv"
      make_venv "$base" .venv
    fi
    PY="$PWD/.venv/bin/python"
  else
    PY="$(command -v "$base")"
  fi
  say "using $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])'))"
}
