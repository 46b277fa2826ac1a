#!/usr/bin/env bash
# airflow-init (docker-compose.yaml): runs once, before every Airflow service and MLflow.
# Refuses missing or placeholder secrets, migrates the metadata DB (Airflow's and the FAB auth
# manager's tables), imports the GPU pool, and creates the admin from .env (a rerun leaves an
# existing admin as it is: FAB prints "already exists").
set -euo pipefail
# Paths from the script's own place and Airflow's settings (/opt/mtrec/scripts and
# /opt/airflow/dags in the image), so the live test runs this same file from a checkout.
python "$(dirname "$0")/../scripts/make_secrets.py" --check
airflow db migrate
airflow fab-db migrate
airflow pools import "${AIRFLOW__CORE__DAGS_FOLDER:-${AIRFLOW_HOME}/dags}/pools.json"
# --option=value: a password of the operator's own that starts with "-" is still a value.
airflow users create --role Admin --username="${AIRFLOW_ADMIN_USER}" \
  --password="${AIRFLOW_ADMIN_PASSWORD}" --firstname mtrec --lastname admin \
  --email "${AIRFLOW_ADMIN_USER}@localhost"
