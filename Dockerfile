# One image for every Airflow service and worker. TORCH_INDEX picks the torch build:
#   docker compose build                                   (CPU wheels)
#   docker compose build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
FROM apache/airflow:3.3.2-python3.11
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
USER airflow
COPY --chown=airflow:root pyproject.toml constraints.txt README.md /opt/mtrec/
COPY --chown=airflow:root src /opt/mtrec/src
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}" \
 && pip install --no-cache-dir -c /opt/mtrec/constraints.txt "/opt/mtrec[stack]"
COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root dvc.yaml params.yaml /opt/mtrec/
COPY --chown=airflow:root gx /opt/mtrec/gx
COPY --chown=airflow:root data/ml-latest-small /opt/mtrec/data/ml-latest-small
ENV MTREC_PROJECT_DIR=/opt/mtrec
