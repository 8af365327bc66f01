# Sourced by scripts/test and scripts/demo: makes a fresh Debian machine ready.
# Installs Erlang/OTP, Elixir, rebar3, gcc and the Python headers from Debian when
# they are missing, then (unless SETUP_VENV=no) a virtualenv in .venv with this
# project (its C core built) and the extras named in $EXTRAS.
set -euo pipefail

PYTHON=${PYTHON:-python3}
need_apt=()
command -v erl >/dev/null 2>&1 || need_apt+=(erlang-nox erlang-dev)
command -v elixirc >/dev/null 2>&1 || need_apt+=(elixir)
command -v rebar3 >/dev/null 2>&1 || need_apt+=(rebar3)
# The codec's compiled core needs a C compiler and the Python headers.
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc)
"$PYTHON" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(
    sysconfig.get_paths()["include"], "Python.h")))' || need_apt+=(python3-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: installing ${need_apt[*]} with apt-get" >&2
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_apt[@]}" >&2
fi

[ "${SETUP_VENV:-yes}" = no ] && return 0
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $PYTHON" >&2
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[${EXTRAS:-test}]" >&2
