"""Command line: ``python -m mtrec <stage> [item] [--params params.yaml]`` runs one stage;
``python -m mtrec preset <name>`` applies a dataset preset (``configs/<name>.yaml``) to the
params file; ``python -m mtrec serve`` serves the registry's ``@champion`` over REST.
``python -m mtrec <stage> --help`` says what a stage reads, writes and which params it uses."""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
import textwrap
import time
from typing import get_args

from mtrec.config import (
    PARAMS_FILE,
    Params,
    Strategy,
    apply_preset,
    load_params,
    presets,
    registry_config,
)
from mtrec.errors import ERROR_FILE_ENV, ConfigError, MtrecError
from mtrec.io import write_json
from mtrec.stages import ALL_STAGES, STAGE_INFO, stage_runner

log = logging.getLogger("mtrec")
PRESET = "preset"
SERVE = "serve"
COMMAND_NAMES = (*ALL_STAGES, PRESET, SERVE)


def nearest(name: str, known: list[str] | tuple[str, ...]) -> str:
    """`` (did you mean X?)`` for a mistyped ``name``, or an empty string."""
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _section_keys(section: str) -> str:
    """``section: key, key, ...`` from the params model (the keys a stage's section holds)."""
    field = Params.model_fields["validate_" if section == "validate" else section]
    keys = ", ".join(type(field.default).model_fields)
    return textwrap.fill(
        f"{section}: {keys}", width=88, initial_indent="  ", subsequent_indent="    "
    )


def _stage_help(name: str) -> str:
    info = STAGE_INFO[name]
    lines = [f"{name}: {info.summary}.", "", f"reads:  {info.reads}", f"writes: {info.writes}"]
    if name == "transfer":
        lines.append(f"strategies: {', '.join(get_args(Strategy))}")
    lines += ["", "params.yaml sections it reads:", *map(_section_keys, info.params)]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The ``mtrec`` parser: one sub-command per stage (and ``preset``), each with its help."""
    parser = argparse.ArgumentParser(
        prog="python -m mtrec",
        description=__doc__,
        # Wide enough for one line per stage.
        formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(
            prog, max_help_position=18, width=100
        ),
    )
    commands = parser.add_subparsers(
        dest="stage", metavar="STAGE", title="stages (in run order), then commands", required=True
    )
    for name, info in STAGE_INFO.items():
        sub = commands.add_parser(
            name,
            help=info.summary,
            description=_stage_help(name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if info.item:
            sub.add_argument("item", nargs="?", help=info.item)
        sub.add_argument("--params", default=PARAMS_FILE, help="params file (default: %(default)s)")
    preset = commands.add_parser(
        PRESET,
        help="apply a dataset preset (configs/<name>.yaml) to the params file",
        description="Rewrite the params file as itself with configs/<name>.yaml on top. "
        "Presets are looked up in configs/ beside the params file, then in ./configs (the "
        "project you run from).",
    )
    preset.add_argument("name", nargs="?", help="the preset (see --list)")
    preset.add_argument("--list", action="store_true", help="list the presets and exit")
    preset.add_argument("--params", default=PARAMS_FILE, help="params file (default: %(default)s)")
    serve = commands.add_parser(
        SERVE,
        help="REST API (POST /invocations) of a registered version, checked before it loads",
        description="Serve a version as `mlflow models serve` does (same REST API), after "
        "checking it is an mtrec model from code with this package's code: a tampered version "
        "is refused before any of it runs. Registry: registry.tracking_uri (or "
        "MLFLOW_TRACKING_URI).",
    )
    serve.add_argument(
        "--model",
        help="models:/<name>@<alias> or models:/<name>/<version> (default: the params' "
        "registered model at serving.alias)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="default: %(default)s")
    serve.add_argument("--port", type=int, default=5001, help="default: %(default)s")
    serve.add_argument("--params", default=PARAMS_FILE, help="params file (default: %(default)s)")
    return parser


def _preset(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        shipped = presets(args.params)
        if args.list:
            for name, about in shipped.items():
                print(f"{name:24} {about}")
            return 0
        if args.name is None:
            parser.error(f"preset needs a name: one of {', '.join(shipped)} (or --list)")
        if args.name not in shipped:
            raise ConfigError(
                f"no preset {args.name!r}{nearest(args.name, list(shipped))}; presets: "
                f"{', '.join(shipped)}"
            )
        apply_preset(args.name, args.params)
    except MtrecError as exc:
        print(f"mtrec preset: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"{args.params}: preset {args.name} applied")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import mlflow

    from mtrec.registry import tracking_uri
    from mtrec.serving import serve

    try:
        params = load_params(args.params)
        registry = registry_config(params)
        model = args.model or f"models:/{registry.model_name}@{params.serving.alias}"
        mlflow.set_tracking_uri(tracking_uri(registry))
        log.info("serving %s on http://%s:%d", model, args.host, args.port)
        serve(model, args.host, args.port)
    except MtrecError as exc:
        print(f"mtrec serve: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one stage; expected failures print one clear line and exit 1."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    # argparse (3.11) names the choices but suggests none: a typo gets the nearest stage.
    if argv and not argv[0].startswith("-") and argv[0] not in COMMAND_NAMES:
        parser.error(
            f"unknown stage {argv[0]!r}{nearest(argv[0], COMMAND_NAMES)}; "
            f"stages: {', '.join(COMMAND_NAMES)}"
        )
    args = parser.parse_args(argv)
    if args.stage == PRESET:
        return _preset(args, parser)
    item = getattr(args, "item", None)
    items = () if item is None else (item,)
    # Our logs at INFO; third-party libraries (GX, MLflow, DVC) only when they warn.
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log.setLevel(logging.INFO)
    if args.stage == SERVE:
        return _serve(args)
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
