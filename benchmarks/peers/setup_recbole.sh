#!/usr/bin/env bash
# RecBole 1.2.1 in its own virtual environment, apart from lakerec's (its pins clash with ours).
# Idempotent: a second run with this script unchanged only checks the import and returns.
#   bash benchmarks/peers/setup_recbole.sh
# Environment: RECBOLE_VENV (default ~/.cache/lakerec/recbole-venv), PYTHON (default python3.11 or python3).
set -euo pipefail
venv=${RECBOLE_VENV:-$HOME/.cache/lakerec/recbole-venv}
py=${PYTHON:-$(command -v python3.11 || command -v python3)}
stamp=$(sha256sum "$0" | cut -c1-16)
check() { TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 "$venv/bin/python" -c \
  'import recbole, torch; from recbole.quick_start import run_recbole; from recbole.model.sequential_recommender import SASRec; assert recbole.__version__ == "1.2.1"' ; }
if [ -f "$venv/.stamp" ] && grep -qx "$stamp" "$venv/.stamp" && check 2>/dev/null; then
  echo "recbole: environment up to date ($venv)"; exit 0
fi
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
# setuptools < 70: RecBole imports ray, which needs pkg_resources (gone from setuptools >= 80; torch 2.13
# asks for >= 77, which only matters when building, so pip's warning about it is expected).
"${pip[@]}" --upgrade pip wheel
"${pip[@]}" torch==2.13.0 "numpy<2" recbole==1.2.1 "pandas<2.3" scipy
"${pip[@]}" setuptools==69.5.1 2> >(grep -v -e "torch .* requires setuptools" -e "dependency resolver does not currently" >&2)  # a second step: one resolve refuses it
check
echo "$stamp" > "$venv/.stamp"
echo "recbole: ready ($venv)"
