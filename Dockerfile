# One image for every Airflow service and worker, and for MLflow (explicit entrypoint there).
# TORCH_INDEX picks the torch build; GIT_REVISION records the code's commit (lineage):
#   GIT_REVISION=$(git rev-parse HEAD) docker compose build          (CPU wheels)
#   docker compose build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
FROM apache/airflow:3.3.2-python3.11
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
# Folders that compose mounts named volumes on: a new volume is a copy of the image's folder,
# owner included, so these must exist and belong to the image's user before the first start.
USER root
RUN mkdir -p /opt/mtrec/runs /opt/mtrec/.dvc/cache /opt/mtrec/data /opt/mlflow-auth \
 && chown -R airflow:root /opt/mtrec /opt/mlflow-auth
USER airflow
COPY --chown=airflow:root pyproject.toml constraints.txt README.md /opt/mtrec/
COPY --chown=airflow:root src /opt/mtrec/src
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}" \
 && pip install --no-cache-dir -c /opt/mtrec/constraints.txt "/opt/mtrec[stack]"
COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root dvc.yaml params.yaml /opt/mtrec/
COPY --chown=airflow:root .dvc/config /opt/mtrec/.dvc/config
COPY --chown=airflow:root configs /opt/mtrec/configs
COPY --chown=airflow:root gx /opt/mtrec/gx
COPY --chown=airflow:root docker /opt/mtrec/docker
COPY --chown=airflow:root scripts/make_secrets.py /opt/mtrec/scripts/make_secrets.py
COPY --chown=airflow:root data/ml-latest-small /opt/mtrec/data/ml-latest-small
ARG GIT_REVISION=unknown
ENV MTREC_PROJECT_DIR=/opt/mtrec MTREC_GIT_REVISION=${GIT_REVISION}
