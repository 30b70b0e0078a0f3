#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment with the verified stack.
# Idempotent: a second run with unchanged requirements only checks and returns in seconds.
#   bash scripts/setup.sh          runtime stack
#   bash scripts/setup.sh --dev    plus the test tools
# Environment: LAKEREC_VENV (default .venv), LAKEREC_CACHE (default ~/.cache/lakerec; horovod wheel lives there),
#              PYTHON (interpreter to build the venv from, default python3.11 or python3).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv=${LAKEREC_VENV:-$root/.venv}
cache=${LAKEREC_CACHE:-$HOME/.cache/lakerec}
dev=0; [ "${1:-}" = "--dev" ] && dev=1
horovod_version=0.28.1

die() { echo "setup: $*" >&2; exit 1; }
say() { echo "setup: $*"; }

# --- prerequisites, each with a message that says what to install -------------------------------
py=${PYTHON:-$(command -v python3.11 || command -v python3 || true)}
[ -n "$py" ] || die "Python 3.10-3.12 not found (install python3.11 and python3.11-venv)"
"$py" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 12))' \
  || die "$py is $("$py" -V 2>&1); pyarrow 14 needs Python 3.10-3.12 (set PYTHON=/path/to/python3.11)"
command -v java >/dev/null || die "Java not found: Spark 4 needs a JDK 17 or 21 (e.g. apt-get install openjdk-17-jdk-headless)"
jv=$(java -version 2>&1 | awk -F'"' '/version/ {print $2}' | cut -d. -f1)
[ "${jv:-0}" -ge 17 ] 2>/dev/null || die "Java $jv found; Spark 4 needs Java 17 or 21 (set JAVA_HOME / PATH)"

stamp_of() { cat requirements.txt setup.cfg "$0" $([ $dev = 1 ] && echo requirements-dev.txt) | sha256sum | cut -c1-16; }
stamp=$(stamp_of)
if [ -f "$venv/.lakerec-stamp" ] && grep -qx "$stamp" "$venv/.lakerec-stamp" \
   && "$venv/bin/python" -c 'import horovod.torch, pyspark, deltalake, lakerec' 2>/dev/null; then
  say "environment up to date ($venv)"; exit 0
fi

[ -x "$venv/bin/python" ] || { say "creating $venv"; "$py" -m venv "$venv" || die "venv creation failed (apt-get install python3-venv?)"; }
# Quiet unless something fails: each step's output (pip's and the build backends' warnings) goes to a log that
# is printed, last 60 lines, only when the step fails.
log=$(mktemp); trap 'rm -f "$log"' EXIT
quiet() { "$@" >"$log" 2>&1 || { tail -60 "$log" >&2; die "failed: $*"; }; }
pip=(quiet "$venv/bin/python" -m pip install -q --disable-pip-version-check)
"${pip[@]}" --upgrade pip "setuptools>=77" wheel
say "installing the pinned stack (requirements.txt)"
"${pip[@]}" -r requirements.txt

# --- horovod 0.28.1: sdist + C++17 patch (torch >= 2.1 headers need C++17), wheel cached outside the clone ---
if ! "$venv/bin/python" -c 'import horovod.torch' 2>/dev/null; then
  mkdir -p "$cache/wheels"
  whl=$(ls "$cache"/wheels/horovod-$horovod_version-*.whl 2>/dev/null | head -1 || true)
  if [ -z "$whl" ]; then
    command -v g++ >/dev/null || die "g++ not found: horovod compiles from source (apt-get install g++)"
    command -v cmake >/dev/null || die "cmake not found: horovod compiles from source (apt-get install cmake)"
    say "building horovod $horovod_version with Gloo (about 3 minutes, once; cached in $cache/wheels)"
    tmp=$(mktemp -d); trap 'rm -rf "$tmp" "$log"' EXIT
    quiet "$venv/bin/python" -m pip download -q --no-deps --no-binary :all: "horovod==$horovod_version" -d "$tmp"
    tar -xzf "$tmp"/horovod-$horovod_version.tar.gz -C "$tmp"
    src="$tmp/horovod-$horovod_version"
    sed -i 's/set(CMAKE_CXX_STANDARD 14)/set(CMAKE_CXX_STANDARD 17)/' "$src/CMakeLists.txt" "$src/horovod/torch/CMakeLists.txt"
    gpu=(); command -v nvcc >/dev/null && [ -n "${LAKEREC_HOROVOD_NCCL:-}" ] && gpu=(HOROVOD_GPU_OPERATIONS=NCCL)
    env "${gpu[@]}" HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_WITHOUT_TENSORFLOW=1 \
      HOROVOD_WITHOUT_MXNET=1 MAKEFLAGS=-j"$(nproc)" \
      "$venv/bin/python" -m pip wheel -q --no-build-isolation --no-deps "$src" -w "$tmp/out" >"$tmp/build.log" 2>&1 \
      || { tail -40 "$tmp/build.log" >&2; die "horovod build failed (log above)"; }
    cp "$tmp"/out/horovod-*.whl "$cache/wheels/"
    whl=$(ls "$cache"/wheels/horovod-$horovod_version-*.whl | head -1)
  fi
  say "installing $(basename "$whl")"
  "${pip[@]}" "$whl"
fi

say "installing lakerec (editable)"
"${pip[@]}" --no-deps -e .
# Every interpreter of the venv imports lakerec's pyarrow 14 patch (lib/lakerec/arrow_compat.py), so plain
# deltalake reads partitioned tables here too; guarded, so a venv without lakerec still starts quietly.
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo 'import importlib.util as u; u.find_spec("lakerec") and __import__("lakerec")' > "$site/lakerec-arrow-compat.pth"
[ $dev = 1 ] && { say "installing test tools"; "${pip[@]}" -r requirements-dev.txt; }
"$venv/bin/python" -c 'import horovod.torch, pyspark, deltalake, petastorm, mlflow, lakerec' \
  || die "import check failed"
echo "$stamp" > "$venv/.lakerec-stamp"
say "ready: $venv"
