#!/usr/bin/env bash
# A Spark standalone cluster on this machine from the installed pyspark (no download): one master, one worker.
#   scripts/cluster.sh start [DIR]   start them; pids, logs and the master URL go to DIR (default ./cluster)
#   scripts/cluster.sh stop [DIR]    stop exactly the processes recorded in DIR (never other Spark processes)
#   scripts/cluster.sh status [DIR]
#   scripts/cluster.sh package       zip the library and the jobs into dist/lakerec.zip for spark-submit --py-files
# Env: SPARK_WORKER_CORES (default: all), SPARK_WORKER_MEMORY (default 4g), LAKEREC_MASTER_PORT (7077),
# LAKEREC_VENV (default .venv: executors run its python, which has lakerec's dependencies).
set -euo pipefail
cmd=${1:-status}
[ "$cmd" = package ] || dir=$(mkdir -p "${2:-cluster}" && cd "${2:-cluster}" && pwd)
venv=$(cd "${LAKEREC_VENV:-.venv}" && pwd)
port=${LAKEREC_MASTER_PORT:-7077}
url="spark://127.0.0.1:$port"

alive() { [ -f "$dir/$1.pid" ] && kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null \
          && grep -q "deploy.$2" "/proc/$(cat "$dir/$1.pid")/cmdline" 2>/dev/null; }

launch() {  # name class args...: start one daemon in the background and record its pid
  local name=$1 class=$2; shift 2
  SPARK_NO_DAEMONIZE=1 nohup "$venv/bin/spark-class" "org.apache.spark.deploy.$class" "$@" \
    >"$dir/$name.log" 2>&1 </dev/null &
  echo $! >"$dir/$name.pid"
}

wait_for() {  # name pattern: until the daemon's log says it is up (or it died)
  for _ in $(seq 1 120); do
    grep -q "$2" "$dir/$1.log" 2>/dev/null && return 0
    kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null || { tail -20 "$dir/$1.log" >&2; echo "cluster: $1 died" >&2; exit 1; }
    sleep 1
  done
  echo "cluster: $1 did not come up in 120 s (log: $dir/$1.log)" >&2; exit 1
}

case $cmd in
  package)
    rm -rf dist/lakerec.zip && mkdir -p dist
    python3 -m zipfile -c dist/lakerec.zip lib/lakerec jobs  # entries named lakerec/... and jobs/...
    echo "dist/lakerec.zip"
    ;;
  start)
    if alive master master.Master; then echo "cluster: already running at $(cat "$dir/master.url")"; exit 0; fi
    export PYSPARK_PYTHON="$venv/bin/python" SPARK_LOG_DIR="$dir" SPARK_WORKER_DIR="$dir/work"
    launch master master.Master --host 127.0.0.1 --port "$port" --webui-port 0
    wait_for master "Starting Spark master"
    wait_for master "I have been elected leader"
    launch worker worker.Worker "$url" --host 127.0.0.1 --webui-port 0 \
      --cores "${SPARK_WORKER_CORES:-$(nproc)}" --memory "${SPARK_WORKER_MEMORY:-4g}"
    wait_for worker "Successfully registered with master"
    echo "$url" >"$dir/master.url"
    echo "cluster: $url (master pid $(cat "$dir/master.pid"), worker pid $(cat "$dir/worker.pid"); logs in $dir)"
    ;;
  stop)
    for name in worker master; do
      class=$([ $name = master ] && echo master.Master || echo worker.Worker)
      if alive $name $class; then
        pid=$(cat "$dir/$name.pid"); kill "$pid"
        for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        echo "cluster: stopped $name (pid $pid)"
      fi
      rm -f "$dir/$name.pid"
    done
    rm -f "$dir/master.url"
    ;;
  status)
    for name in master worker; do
      class=$([ $name = master ] && echo master.Master || echo worker.Worker)
      alive $name $class && echo "$name: running (pid $(cat "$dir/$name.pid"))" || echo "$name: stopped"
    done
    ;;
  *) echo "usage: $0 start|stop|status [DIR] | package" >&2; exit 2 ;;
esac
