#!/usr/bin/env bash
# Airflow in its own virtual environment (its pins clash with the stack's: pydantic, sqlalchemy, ...), used to
# check that the generated DAG loads. Idempotent: returns at once when the pinned version is there.
set -euo pipefail
version=3.3.2
venv="${LAKEREC_CACHE:-$HOME/.cache/lakerec}/airflow-venv"
if "$venv/bin/python" -c "import airflow, sys; sys.exit(airflow.__version__ != '$version')" 2>/dev/null; then
  echo "$venv"; exit 0
fi
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check "apache-airflow==$version" >&2
echo "$venv"
