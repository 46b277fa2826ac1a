"""Write a ``.env`` for the compose stack with fresh random secrets, or check one.

    python scripts/make_secrets.py            # `make secrets`: writes .env (never overwrites one)
    python scripts/make_secrets.py --check    # exits 1 naming each missing or placeholder secret

``--check`` reads the environment (airflow-init runs it inside the stack, before anything
else starts) so a stack started from an unedited ``.env.example`` refuses to come up.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

# Every secret compose interpolates, and how a fresh one is made.
SECRETS: dict[str, Callable[[], str]] = {
    "POSTGRES_PASSWORD": lambda: secrets.token_urlsafe(24),
    "AIRFLOW_ADMIN_PASSWORD": lambda: secrets.token_urlsafe(18),
    # A Fernet key is 32 random bytes, url-safe base64 (no cryptography import needed here).
    "AIRFLOW_FERNET_KEY": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),
    "AIRFLOW_JWT_SECRET": lambda: secrets.token_urlsafe(48),
    "MLFLOW_ADMIN_PASSWORD": lambda: secrets.token_urlsafe(18),
    "MLFLOW_SECRET_KEY": lambda: secrets.token_urlsafe(48),
    "S3_SECRET_KEY": lambda: secrets.token_urlsafe(24),
}
# Not secret: written as they are.
SETTINGS = {
    "AIRFLOW_UID": "50000",
    "POSTGRES_USER": "airflow",
    "AIRFLOW_ADMIN_USER": "admin",
    "MLFLOW_ADMIN_USER": "admin",
    "S3_ACCESS_KEY": "mtrec",
}
MIN_LENGTH = 16  # shorter is a hand-typed placeholder, not a generated secret
PLACEHOLDER = "change-me"  # how .env.example's values used to start


def problems(env: dict[str, str]) -> list[str]:
    """Each secret that is missing, short or reads like a placeholder."""
    found = []
    for name in SECRETS:
        value = env.get(name, "")
        if not value:
            found.append(f"{name} is not set")
        elif len(value) < MIN_LENGTH or value.lower().startswith(PLACEHOLDER):
            found.append(f"{name} looks like a placeholder ({len(value)} characters)")
    if env.get("AIRFLOW_FERNET_KEY"):
        try:
            key = base64.urlsafe_b64decode(env["AIRFLOW_FERNET_KEY"].encode())
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            found.append("AIRFLOW_FERNET_KEY is not a Fernet key (32 url-safe base64 bytes)")
    return found


def fresh_secret(name: str) -> str:
    """A new value for secret ``name``, drawn again while it starts with "-": a command line
    that takes the secret as an argument (``mc alias set`` in minio-buckets) would read it as
    an option."""
    while (value := SECRETS[name]()).startswith("-"):
        pass
    return value


def write_env(path: Path) -> None:
    """A new ``.env``: the settings and a fresh value for every secret (owner-only)."""
    if path.exists():
        raise SystemExit(f"{path} exists; move it away first (its secrets may be in use)")
    lines = [f"{k}={v}" for k, v in SETTINGS.items()]
    lines += [f"{name}={fresh_secret(name)}" for name in SECRETS]
    path.touch(mode=0o600)  # owner-only before a secret is in it
    path.write_text("# Written by `make secrets`. Keep it out of git.\n" + "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="check the environment's secrets")
    parser.add_argument("--env-file", type=Path, default=Path(".env"))
    args = parser.parse_args(argv)
    if args.check:
        found = problems(dict(os.environ))
        for problem in found:
            print(f"refusing to start: {problem} (run `make secrets`)", file=sys.stderr)
        return 1 if found else 0
    write_env(args.env_file)
    print(f"wrote {args.env_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
