"""The ``rxpipe`` command line: ``run`` a pipeline file, list ``plugins``.

Importing this module is cheap (argparse only); TensorFlow is imported by the plugins
that need it, when a pipeline runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rxpipe",
        description="Machine-learning pipelines as reactive streams (Pipcook's plugin chain "
        "on RxPY and TensorFlow).",
    )
    parser.add_argument("--version", action="version", version=f"rxpipe {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser("run", help="run a pipeline file (TOML or JSON)")
    run.add_argument("pipeline", metavar="PIPELINE_FILE", help="the pipeline file")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="TARGET.PARAM=VALUE",
        help="override a parameter, e.g. --set train.fit.epochs=3 (repeatable)",
    )
    run.add_argument("--runs-dir", help="where run directories go (default: the file's runs_dir)")
    run.add_argument(
        "--log-format",
        choices=("console", "json"),
        help="log every event as a line on stderr (default: console when stderr is not a "
        "terminal, else a progress bar)",
    )
    run.add_argument("--no-progress", action="store_true", help="never show the progress bar")

    plugins = commands.add_parser("plugins", help="list the registered plugins, or show one")
    plugins.add_argument("name", nargs="?", help="a plugin name, e.g. train.fit")
    return parser


def _version() -> str:
    from rxpipe import __version__

    return __version__


def _run(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ banner lines
    from rxpipe.config import apply_overrides, load_config
    from rxpipe.pipeline import Pipeline

    config = apply_overrides(load_config(args.pipeline), args.overrides)
    if args.runs_dir:
        config = apply_overrides(config, [f"pipeline.runs_dir={_quote(args.runs_dir)}"])
    pipeline = Pipeline.from_config(config)
    interactive = sys.stderr.isatty()
    log_format = args.log_format or (None if interactive and not args.no_progress else "console")
    result = pipeline.run(progress=False if args.no_progress else None, log_format=log_format)
    for split, metrics in result.metrics.items():
        if "accuracy" in metrics:
            print(f"{split} accuracy: {metrics['accuracy']:.4f} ({metrics['samples']} samples)")
    if "model" in result.artifacts:
        print(f"model saved to: {result.artifacts['model']}")
    print(f"run directory: {result.run_dir}")
    return EXIT_OK


def _quote(text: str) -> str:
    import json

    return json.dumps(text)


def _plugins(args: argparse.Namespace) -> int:
    import inspect

    from rxpipe.registry import registry

    if args.name:
        info = registry.get(args.name)
        print(f"{info.name}  ({info.kind.value})\n")
        print(info.doc or "(no documentation)")
        print("\nParameters:")
        for p in info.params:
            default = "required" if p.required else f"default {p.default!r}"
            print(f"  {p.name}: {_annotation(p.annotation)}  ({default})")
        return EXIT_OK
    infos = registry.infos()
    width = max(len(i.name) for i in infos)
    for info in infos:
        params = ", ".join(
            p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
            for p in info.params
        )
        print(f"{info.name:<{width}}  {info.summary}")
        if params:
            print(f"{'':<{width}}    ({params})")
    return EXIT_OK


def _annotation(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("collections.abc.", "")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 ok, 1 run failed, 2 usage, 130 Ctrl-C)."""
    args = _parser().parse_args(argv)
    from rxpipe.errors import ConfigError, PipelineCancelled, RxpipeError

    try:
        if args.command == "run":
            return _run(args)
        return _plugins(args)
    except ConfigError as error:
        print(f"rxpipe: configuration error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (PipelineCancelled, KeyboardInterrupt):
        print("rxpipe: interrupted; every stage was stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RxpipeError as error:
        print(f"rxpipe: run failed: {error}", file=sys.stderr)
        return EXIT_FAILED
