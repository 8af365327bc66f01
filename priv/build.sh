#!/usr/bin/env bash
# Compiles the BEAM side (Erlang and Elixir modules in priv/) into one folder:
#   bash priv/build.sh [OUT_DIR]        (default: priv/ebin)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/ebin}"
mkdir -p "$out"
erlc -Werror -o "$out" "$here"/*.erl
rm -f "$out"/Elixir.*.beam
elixirc --warnings-as-errors -pa "$out" -o "$out" "$here"/*.ex >/dev/null
