# Sourced by scripts/test and scripts/demo: makes a fresh Debian machine ready.
# Installs Erlang/OTP and Elixir from Debian when they are missing, then a
# virtualenv in .venv with this project and the extras named in $EXTRAS.
set -euo pipefail

need_apt=()
command -v erl >/dev/null 2>&1 || need_apt+=(erlang-nox erlang-dev)
command -v elixirc >/dev/null 2>&1 || need_apt+=(elixir)
if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: installing ${need_apt[*]} with apt-get" >&2
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_apt[@]}" >&2
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $PYTHON" >&2
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[${EXTRAS:-test}]" >&2
