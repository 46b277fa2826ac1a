"""The registered model holds no pickled code: it loads from code in the package and tensors,
and a tampered version is refused or, where MLflow would read it, never executed."""

from __future__ import annotations

import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import requests
import yaml

from mtrec.config import write_params
from mtrec.errors import RegistryError
from mtrec.registry import Registry
from mtrec.serving import MODEL_CODE, load_recommender
from mtrec.stages import recommend, register

from .conftest import free_port, wait_for
from .registry_project import evaluated, preprocessed, registry_params, write_checkpoints


class _Bomb:
    """Unpickling it creates ``path``: proof that the file was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.fixture(scope="module")
def registered(tmp_path_factory, canonical):
    """The register stage run once (@challenger: the gates do not matter here)."""
    root = tmp_path_factory.mktemp("serving")
    params = registry_params(
        root,
        root,
        {"serving": {"alias": "challenger", "output": str(root / "recommendations.parquet")}},
    )
    preprocessed(params, canonical)
    write_checkpoints(params)
    evaluated(params)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        register.run(params)
    return params


@pytest.fixture
def registry(registered, monkeypatch) -> Registry:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return Registry(registered.registry)


def _version_dir(registry: Registry, version: str = "1") -> Path:
    """Where the version's files are in the (local) artifact store: what an attacker with
    write access to the store would change."""
    uri = registry.client.get_model_version_download_uri(registry.cfg.model_name, version)
    return Path(uri.removeprefix("file://"))


@pytest.fixture
def tampered(registry) -> Path:
    """The version's files, restored after the test."""
    where = _version_dir(registry)
    backup = where.parent / "backup"
    shutil.copytree(where, backup)
    yield where
    shutil.rmtree(where)
    backup.rename(where)


def test_a_version_is_code_from_the_package_and_tensors(registered, registry) -> None:
    where = _version_dir(registry)
    assert not list(where.rglob("*.pkl"))
    flavor = yaml.safe_load((where / "MLmodel").read_text())["flavors"]["python_function"]
    assert Path(flavor["model_code_path"]).name == MODEL_CODE.name
    assert "code" not in flavor or not flavor["code"]  # no package copy shipped with it
    assert (where / MODEL_CODE.name).read_bytes() == MODEL_CODE.read_bytes()

    # What `mlflow models serve` does, and what the recommend stage does.
    served = mlflow.pyfunc.load_model(f"models:/{registry.cfg.model_name}/1")
    users = pd.DataFrame({"user": [1, 2, 999_999]})
    top = served.predict(users, params={"k": 5})
    assert len(top) == 15 and set(top["rank"]) == set(range(1, 6))
    recommend.run(registered)
    table = pd.read_parquet(registered.serving.output)
    users = pd.read_parquet(Path(registered.paths.processed) / "users.parquet")
    assert table["user"].nunique() == len(users)


def test_a_planted_pickle_is_never_unpickled(registry, tampered, tmp_path) -> None:
    marker = tmp_path / "exploited"
    with (tampered / "python_model.pkl").open("wb") as f:
        pickle.dump(_Bomb(marker), f)
    model = mlflow.pyfunc.load_model(str(tampered))
    assert not marker.exists()
    assert len(model.predict(pd.DataFrame({"user": [1]}), params={"k": 3})) == 3


def test_a_pickle_bomb_in_place_of_the_weights_is_refused(registry, tampered, tmp_path) -> None:
    marker = tmp_path / "exploited"
    for weights in (tampered / "artifacts").iterdir():
        with weights.open("wb") as f:
            pickle.dump(_Bomb(marker), f)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_recommender(f"models:/{registry.cfg.model_name}/1")
    assert not marker.exists()


def test_tampered_code_or_loader_is_refused_before_anything_runs(
    registry, tampered, tmp_path
) -> None:
    marker = tmp_path / "exploited"
    uri = f"models:/{registry.cfg.model_name}/1"
    code = tampered / MODEL_CODE.name
    original = code.read_text()
    code.write_text(f"open({str(marker)!r}, 'w')\n" + original)
    with pytest.raises(RegistryError, match="differs from this package"):
        load_recommender(uri)
    assert not marker.exists()

    code.write_text(original)
    mlmodel = tampered / "MLmodel"
    spec = yaml.safe_load(mlmodel.read_text())
    del spec["flavors"]["python_function"]["model_code_path"]
    spec["flavors"]["python_function"]["loader_module"] = "mlflow.pyfunc.model"
    spec["flavors"]["python_function"]["python_model"] = "python_model.pkl"
    mlmodel.write_text(yaml.safe_dump(spec))
    with pytest.raises(RegistryError, match="would unpickle"):
        load_recommender(uri)


def _serve(params, tmp_path: Path, port: int, **kwargs) -> subprocess.Popen:
    """``python -m mtrec serve`` (what `make serve` runs) on ``params``'s registry."""
    write_params(params, tmp_path / "params.yaml")
    command = ["serve", "--params", str(tmp_path / "params.yaml"), "--port", str(port)]
    return subprocess.Popen(
        [sys.executable, "-m", "mtrec", *command],
        text=True,
        **kwargs,
    )


def test_the_rest_server_serves_the_alias_as_mlflow_models_serve_would(
    registered, registry, tmp_path
) -> None:
    port = free_port()
    server = _serve(registered, tmp_path, port)  # serving.alias challenger: version 1
    try:

        def answering() -> bool:
            assert server.poll() is None, "serve exited"
            return requests.get(f"http://127.0.0.1:{port}/ping", timeout=5).ok

        wait_for("mtrec serve", answering, 120, every=0.5)
        answer = requests.post(
            f"http://127.0.0.1:{port}/invocations",
            json={"dataframe_split": {"columns": ["user"], "data": [[1], [2]]}, "params": {"k": 3}},
            timeout=60,
        )
        assert answer.ok, answer.text
        rows = answer.json()["predictions"]
        assert [(r["user"], r["rank"]) for r in rows] == [(u, k) for u in (1, 2) for k in (1, 2, 3)]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_rest_server_refuses_a_tampered_version_before_it_runs(
    registered, registry, tampered, tmp_path
) -> None:
    """`mlflow models serve` would run a tampered version's code; `mtrec serve` checks first."""
    marker = tmp_path / "exploited"
    code = tampered / MODEL_CODE.name
    code.write_text(f"open({str(marker)!r}, 'w')\n" + code.read_text())
    server = _serve(registered, tmp_path, 1, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, stderr = server.communicate(timeout=120)
    assert server.returncode == 1, stderr
    assert "mtrec serve: RegistryError" in stderr and "differs from this package" in stderr
    assert not marker.exists()
