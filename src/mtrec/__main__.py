"""Command line: ``python -m mtrec <stage> [item] [--params params.yaml]``; ``python -m mtrec
preset <name>`` applies a dataset preset (``configs/<name>.yaml``) to the params file."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from mtrec.config import PARAMS_FILE, apply_preset, load_params
from mtrec.errors import ERROR_FILE_ENV, MtrecError
from mtrec.io import write_json
from mtrec.stages import COMMANDS, ITEM_STAGES, SERVING_STAGES, STAGES, stage_runner

log = logging.getLogger("mtrec")
PRESET = "preset"


def main(argv: list[str] | None = None) -> int:
    """Run one stage; expected failures print one clear line and exit 1."""
    parser = argparse.ArgumentParser(prog="mtrec", description=__doc__)
    parser.add_argument("stage", choices=(*STAGES, *SERVING_STAGES, *COMMANDS, PRESET))
    parser.add_argument(
        "item", nargs="?", help="transfer: a strategy; curve: a train fraction; preset: its name"
    )
    parser.add_argument("--params", default=PARAMS_FILE, help="params file (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.stage == PRESET:
        if args.item is None:
            parser.error("preset needs a name: one of configs/*.yaml without .yaml")
        try:
            apply_preset(args.item, args.params)
        except MtrecError as exc:
            print(f"mtrec preset: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        print(f"{args.params}: preset {args.item} applied")
        return 0
    if args.item is not None and args.stage not in ITEM_STAGES:
        parser.error(f"stage {args.stage} takes no item (only {', '.join(ITEM_STAGES)} do)")
    items = () if args.item is None else (args.item,)
    # Our logs at INFO; third-party libraries (GX, MLflow, DVC) only when they warn.
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log.setLevel(logging.INFO)
    start = time.perf_counter()
    # Under torchrun, join the data-parallel group. Imported only then: it imports torch
    # (2 s), which ingest, validate and preprocess never need.
    in_group = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if in_group:
        from mtrec.core import distributed

        if not distributed.init_from_env().main:
            log.setLevel(logging.WARNING)  # rank 0 speaks for the group
    try:
        stage_runner(args.stage)(load_params(args.params), *items)
    except MtrecError as exc:
        print(f"mtrec {args.stage}: {type(exc).__name__}: {exc}", file=sys.stderr)
        if os.environ.get(ERROR_FILE_ENV):
            error = {"stage": args.stage, "error": type(exc).__name__, "message": str(exc)}
            write_json(os.environ[ERROR_FILE_ENV], error)
        return 1
    finally:
        if in_group:
            distributed.shutdown()
    log.info("stage %s done in %.1fs", args.stage, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
