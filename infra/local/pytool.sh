#!/usr/bin/env bash
# Python tools the tests drive, from PyPI, each in a virtualenv of its own outside the
# clone ($TACHYON_CACHE, default ~/.cache/tachyon/<tool>-venv), installed once.
#
#   infra/local/pytool.sh schemathesis    install (once); print the path of its executable
#
# schemathesis: the OpenAPI fuzzer of tests/fuzz.rs and scripts/fuzz-api.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case "${1:-}" in
schemathesis) requirement="schemathesis==4.32.*" executable=schemathesis ;;
*)
    echo "usage: $0 schemathesis" >&2
    exit 2
    ;;
esac

venv="${TACHYON_CACHE:-$HOME/.cache/tachyon}/$1-venv"
ensure_venv "$venv" "$requirement"
echo "$venv/bin/$executable"
