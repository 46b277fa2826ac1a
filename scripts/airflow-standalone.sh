#!/usr/bin/env bash
# `make airflow`: Airflow standalone (API server + UI, scheduler, DAG processor, triggerer;
# LocalExecutor, SQLite in $AIRFLOW_HOME) on the project's DAGs and its local MLflow store.
# Ctrl-C stops all of it: standalone runs in a session of its own (setsid), stopped as a group,
# together with any task process that left the group.
set -euo pipefail
cd "$(dirname "$0")/.."
export MTREC_PROJECT_DIR="${MTREC_PROJECT_DIR:-$PWD}"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$MTREC_PROJECT_DIR/airflow_home}"
export AIRFLOW__CORE__DAGS_FOLDER="$PWD/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__PARALLELISM=4
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin
export AIRFLOW__API__PORT="${AIRFLOW_PORT:-8080}"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://localhost:$AIRFLOW__API__PORT/execution/"
export MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:-sqlite:///$MTREC_PROJECT_DIR/mlflow.db}"
export GX_ANALYTICS_ENABLED=False
url="http://localhost:$AIRFLOW__API__PORT"
mkdir -p "$AIRFLOW_HOME"
log="$AIRFLOW_HOME/standalone.log"

airflow db migrate >"$log" 2>&1
airflow pools import dags/pools.json >>"$log" 2>&1

setsid airflow standalone >>"$log" 2>&1 &
pid=$!

descendants() {  # task processes put themselves in process groups of their own
    python -c 'import psutil, sys
print(" ".join(str(c.pid) for c in psutil.Process(int(sys.argv[1])).children(recursive=True)))' "$1" 2>/dev/null || true
}
stop() {
    trap - INT TERM EXIT
    echo "stopping Airflow (process group $pid)"
    local pids; pids=$(descendants "$pid")
    kill -TERM -- "-$pid" $pids 2>/dev/null || true
    for _ in $(seq 30); do
        kill -0 -- "-$pid" 2>/dev/null || kill -0 $pids 2>/dev/null || return 0
        sleep 1
    done
    kill -KILL -- "-$pid" $pids 2>/dev/null || true
}
trap 'stop; exit 130' INT TERM
trap stop EXIT

for _ in $(seq 180); do
    kill -0 "$pid" 2>/dev/null || { tail -30 "$log"; echo "airflow standalone exited"; exit 1; }
    python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
        "$url/api/v2/monitor/health" 2>/dev/null && break
    sleep 1
done
passwords="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
password=$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['admin'])" "$passwords")
cat <<INFO

  Airflow UI   $url   (login: admin / $password)
  DAGs         $AIRFLOW__CORE__DAGS_FOLDER
  MLflow store $MLFLOW_TRACKING_URI   (browse it: make mlflow)
  Log          $log

  Ctrl-C stops everything.
INFO
wait "$pid"
