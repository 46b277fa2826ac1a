-- MLflow's backend store lives beside Airflow's metadata DB in the same Postgres server.
CREATE DATABASE mlflow;
