#!/usr/bin/env bash
# Run Meta's reference data2vec (fairseq-fixed 0.12.3.1, examples/data2vec) once to
# produce the small parity fixtures in tests/fixtures/parity/.
#
# The reference does not import on Python 3.11 / numpy 2 without the runtime shim
# /work/shared/reference/reference_runtime/sitecustomize.py (see
# /work/shared/reference/running_the_reference.md). This wrapper builds a temp dir
# holding that shim plus a symlink `examples -> <site-packages>/fairseq/examples`,
# puts it first on PYTHONPATH and runs scripts/make_parity_fixtures.py.
#
# Never import data2vec_plugin in this process (fairseq keeps the first class
# registered under a model name).
#
# Usage: scripts/make_parity_fixtures.sh [--only NAME[,NAME...]] [--out DIR]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
SHIM="${D2V_REF_SHIM:-/work/shared/reference/reference_runtime/sitecustomize.py}"

if [[ ! -f "$SHIM" ]]; then
  echo "reference shim not found: $SHIM (set D2V_REF_SHIM)" >&2
  exit 2
fi

SITE_FAIRSEQ="$("$PY" -c 'import os, fairseq; print(os.path.dirname(fairseq.__file__))')"
if [[ ! -d "$SITE_FAIRSEQ/examples/data2vec" ]]; then
  echo "reference code not found under $SITE_FAIRSEQ/examples/data2vec" >&2
  exit 2
fi

RT="$(mktemp -d -t d2v_ref_rt.XXXXXX)"
trap 'rm -rf "$RT"' EXIT
cp "$SHIM" "$RT/sitecustomize.py"
ln -s "$SITE_FAIRSEQ/examples" "$RT/examples"

cd "$ROOT"
PYTHONPATH="$RT${PYTHONPATH:+:$PYTHONPATH}" "$PY" -B "$ROOT/scripts/make_parity_fixtures.py" "$@"
