"""`make airflow` as a newcomer uses it: the UI in a real browser, a run triggered from the
form, and Ctrl-C stopping every process while that run is working.

That a run goes on to succeed and the UI shows it is checked in a browser on the live test's
run (tests/e2e/test_live_stack.py), which pays for one full DAG run instead of two.

The browser is Debian's headless Chromium driven by Playwright (`executable_path`; Playwright
never downloads one). `.ci/run` installs it; on a machine without it the test is skipped.
Set MTREC_SCREENSHOTS to a folder to keep the screenshots (the README's comes from here).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import requests
import yaml

from ..conftest import make_project
from .make_airflow import free_port, start_make_airflow

CHROMIUM = next((p for p in map(shutil.which, ("chromium-headless-shell", "chromium")) if p), None)
# Under pytest-xdist (make test) never beside the live stack (tests/conftest.py: XDIST_GROUPS):
# `airflow standalone` serves task logs on fixed ports.
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Debian chromium (apt-get install chromium-headless-shell; .ci/run does)",
)


def _screenshot(page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=tmp_path / name)
    if folder := os.environ.get("MTREC_SCREENSHOTS"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / name, Path(folder) / name)


def test_trigger_from_the_form_then_ctrl_c_stops_everything(tmp_path) -> None:
    from playwright.sync_api import expect, sync_playwright

    project = make_project(tmp_path)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["transfer"]["strategies"] = ["scratch", "finetune"]
    params["curve"]["fractions"] = [params["target"]["train_fraction"]]
    params["gates"]["require_transfer_gain"] = False
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    port = free_port()
    env = os.environ | {
        "MTREC_PROJECT_DIR": str(project),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW_PORT": str(port),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    make, text = start_make_airflow(env)
    tree: list[psutil.Process] = []
    try:
        assert f"http://localhost:{port}" in text and "login: admin / " in text, text
        password = text.split("login: admin / ")[1].split(")")[0]
        url = f"http://localhost:{port}"
        root = psutil.Process(make.pid)
        tree = [root, *root.children(recursive=True)]

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{url}/")

            page.goto(f"{url}/dags/mtrec_training")
            page.get_by_test_id("trigger-dag-button").click()
            # The form's defaults are params.yaml's, one field per key; no literal null.
            expect(page.get_by_text("none: params.yaml as it is").first).to_be_visible()
            pretrain = page.get_by_role("spinbutton", name="Pretraining max epochs")
            assert pretrain.input_value() == str(params["pretrain"]["epochs"])
            epochs = page.get_by_role("spinbutton", name="Transfer max epochs")
            assert epochs.input_value() == str(params["transfer"]["train"]["epochs"])
            epochs.fill("1")
            # The fields at the top of the dialog, for the README's screenshot.
            page.get_by_text("Run Parameters").evaluate("e => e.scrollIntoView()")
            _screenshot(page, tmp_path, "airflow-trigger-form.png")
            page.get_by_test_id("trigger-dag-submit").click()
            page.wait_for_url(f"{url}/dags/mtrec_training/runs/**")
            run_id = page.url.rsplit("/runs/", 1)[1]

            # The run's own state badge, in the page header: the run was accepted and starts.
            state = page.get_by_test_id("header-card").get_by_test_id("state-badge")
            expect(state).to_have_text(re.compile("Queued|Running"), timeout=120_000)
            _screenshot(page, tmp_path, "airflow-run-started.png")
            browser.close()

        session = requests.Session()
        token = requests.post(
            f"{url}/auth/token", json={"username": "admin", "password": password}, timeout=30
        ).json()["access_token"]
        session.headers["Authorization"] = f"Bearer {token}"
        run_url = f"{url}/api/v2/dags/mtrec_training/dagRuns/{run_id}"
        run = session.get(run_url, timeout=30).json()
        # What the form said, and the untouched field as params.yaml has it.
        assert run["conf"]["transfer_epochs"] == 1
        assert run["conf"]["pretrain_epochs"] == params["pretrain"]["epochs"]

        # Ctrl-C while the run works: the stage tasks run as processes of their own.
        def ingest_started() -> bool:
            tis = session.get(f"{run_url}/taskInstances", timeout=30).json()["task_instances"]
            states = {ti["task_id"]: ti["state"] for ti in tis}
            assert "failed" not in states.values(), states
            return states.get("ingest") in {"running", "success"}

        deadline = time.monotonic() + 300
        while not ingest_started():
            assert time.monotonic() < deadline, "the form's run never reached ingest"
            time.sleep(2)
        tree += [p for p in root.children(recursive=True) if p not in tree]
        assert len(tree) > 5  # make, the script, standalone and its services
        os.killpg(make.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
        make.wait(timeout=90)
        _, alive = psutil.wait_procs(tree, timeout=30)
        assert not alive, f"still running after Ctrl-C: {[p.cmdline() for p in alive]}"
    finally:
        if make.poll() is None:  # failed before its own Ctrl-C
            with contextlib.suppress(psutil.Error):
                tree += [p for p in psutil.Process(make.pid).children(recursive=True)]
            os.killpg(make.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                make.wait(timeout=60)
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                proc.kill()
