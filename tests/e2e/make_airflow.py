"""Start `make airflow` as a newcomer types it, for the tests that stop it again."""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Mapping

from ..conftest import PROJECT_ROOT

READY = "Ctrl-C stops everything"


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _terminal_signals() -> None:
    """Ctrl-C and hang-up as a terminal delivers them: a test runner started in the background
    may ignore SIGINT, and a shell can never trap a signal ignored when it started."""
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def start_make_airflow(env: Mapping[str, str]) -> tuple[subprocess.Popen[str], str]:
    """`make airflow` in a session of its own (a terminal's foreground group, to signal as a
    terminal would); returns the process and its banner once it says it is ready. `-o` only
    because the tests already run inside the venv."""
    make = subprocess.Popen(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "airflow"],
        cwd=PROJECT_ROOT,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=_terminal_signals,
    )
    banner = []
    for line in make.stdout:
        banner.append(line)
        if READY in line:
            break
    return make, "".join(banner)
