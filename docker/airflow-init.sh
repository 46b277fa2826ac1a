#!/usr/bin/env bash
# airflow-init (docker-compose.yaml): runs once, before every Airflow service and MLflow.
# Refuses missing or placeholder secrets, migrates the metadata DB (Airflow's and the FAB auth
# manager's tables), imports the GPU pool, and creates the admin from .env (a rerun leaves an
# existing admin as it is: FAB prints "already exists").
set -euo pipefail
python /opt/mtrec/scripts/make_secrets.py --check
airflow db migrate
airflow fab-db migrate
airflow pools import /opt/airflow/dags/pools.json
airflow users create --role Admin --username "${AIRFLOW_ADMIN_USER}" \
  --password "${AIRFLOW_ADMIN_PASSWORD}" --firstname mtrec --lastname admin \
  --email "${AIRFLOW_ADMIN_USER}@localhost"
