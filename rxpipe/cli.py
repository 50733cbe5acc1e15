"""The ``rxpipe`` command line: ``run``, ``bench``, ``plugins``, ``predict``, ``serve``.

Importing this module is cheap (argparse only), and so are ``rxpipe --help`` and
``rxpipe plugins``. The commands that need TensorFlow import it first, through
:func:`rxpipe.tf_import.import_tensorflow` (without its start-up notices), once
everything that can be checked without it has been: the pipeline file (plugin names,
parameter names and types, the order of plugin kinds, the runs directory), the
``--resume`` directory, the model bundle of ``predict`` and ``serve``, and the options'
ranges. A mistake there exits 2 within a fraction of a second.

SIGTERM stops a command as Ctrl-C does: the run is cancelled, every stage stopped, its
run.json says ``failed`` and a ``run_failed`` event is published; the exit status is 143
(128 + 15, as Ctrl-C's is 130 = 128 + 2). A second SIGTERM ends the process at once.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rxpipe.pipeline import Pipeline

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143

_EPILOG = (
    "exit status: 0 done, 1 the run failed, 2 a configuration or usage error, 130 "
    "interrupted (Ctrl-C), 143 terminated (SIGTERM). Ctrl-C and SIGTERM both stop every "
    "stage, mark the run failed in its run.json and log run_failed; a second SIGTERM "
    "ends the process at once. A run that fails or is stopped prints its run directory, "
    "and the --resume command when it can go on."
)
_SERVING_EPILOG = (
    "exit status: 0 done, 1 failed (serve: the address cannot be used), 2 a usage error: "
    "RUN_DIR holds no readable model bundle, an INPUT is unreadable or does not fit the "
    "model, or an option is out of range; 130 interrupted (Ctrl-C)."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rxpipe",
        description="Machine-learning pipelines as reactive streams (Pipcook's plugin chain "
        "on RxPY and TensorFlow).",
        epilog=_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"rxpipe {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser("run", help="run a pipeline file (TOML or JSON)", epilog=_EPILOG)
    _add_pipeline_arguments(run, optional=True)
    run.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue a stopped run in its directory, from its last completed epoch (with "
        "--set, not with PIPELINE_FILE or --runs-dir: the run stays in RUN_DIR)",
    )
    run.add_argument(
        "--tensorboard",
        action="store_true",
        help="write TensorBoard scalars under RUN_DIR/tensorboard",
    )
    run.add_argument(
        "--log-format",
        choices=("console", "json"),
        help="log events as lines on stderr: run, epoch, evaluation, artifact, drop, skip, "
        "cache and throughput events; not train_progress, stage_started or stage_completed "
        "(events.jsonl has every event). Default: console when stderr is not a terminal, "
        "else a progress bar",
    )
    run.add_argument("--no-progress", action="store_true", help="never show the progress bar")

    _add_bench_command(commands)

    plugins = commands.add_parser("plugins", help="list the registered plugins, or show one")
    plugins.add_argument("name", nargs="?", help="a plugin name, e.g. train.fit")
    _add_serving_commands(commands)
    return parser


def _add_pipeline_arguments(parser: argparse.ArgumentParser, optional: bool = False) -> None:
    """PIPELINE_FILE, --set and --runs-dir, shared by `run` and `bench`."""
    parser.add_argument(
        "pipeline",
        metavar="PIPELINE_FILE",
        nargs="?" if optional else None,
        help="the pipeline file (TOML or JSON)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="TARGET.PARAM=VALUE",
        help="override a parameter, e.g. --set train.fit.epochs=3 (repeatable)",
    )
    parser.add_argument(
        "--runs-dir", help="where run directories go (default: the file's runs_dir)"
    )


def _load_pipeline(args: argparse.Namespace) -> Pipeline:
    """The pipeline of ``args.pipeline`` with the --set overrides and --runs-dir applied.

    The file is read and checked first (:meth:`rxpipe.Pipeline.check_config`, which builds
    no stage); then TensorFlow is imported (see :func:`_import_tensorflow`), then the
    stages are built (some import Keras).
    """
    import attrs

    from rxpipe.config import apply_overrides, load_config, naming_origin
    from rxpipe.errors import ConfigError
    from rxpipe.pipeline import Pipeline

    config = apply_overrides(load_config(args.pipeline), args.overrides)
    if args.runs_dir:
        config = attrs.evolve(config, runs_dir=args.runs_dir)
    with naming_origin(config, args.pipeline, args.overrides):
        try:
            Pipeline.check_config(config)
        except ConfigError as error:
            if not args.runs_dir or error.path != "pipeline.runs_dir":
                raise
            raise ConfigError(str(error).removeprefix(f"{error.path}: "), "--runs-dir") from None
        _import_tensorflow()
        return Pipeline.from_config(config)


def _import_tensorflow() -> None:
    """Import TensorFlow, leaving out the notices its C++ runtime prints as it starts.

    Lines such as ``Could not find cuda drivers`` and ``failed call to cuInit`` come before
    TensorFlow's logging is set up, whoever imports it first (a plugin building its stage
    imports Keras), so the commands that need it import it here, through
    :func:`rxpipe.tf_import.import_tensorflow`.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's later INFO lines
    from rxpipe.tf_import import import_tensorflow

    import_tensorflow()


def _add_bench_command(commands: Any) -> None:
    bench = commands.add_parser(
        "bench", help="measure each stage's throughput and name the bottleneck stage"
    )
    _add_pipeline_arguments(bench)
    bench.add_argument(
        "--train-steps",
        type=int,
        metavar="N",
        help="also train at least N steps (whole epochs, or N-step epochs if a pass is "
        "longer), against the model's compute-only bound",
    )
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument("--plot", metavar="OUT_PNG", help="chart each stage's samples/s over time")
    bench.add_argument(
        "--interval",
        type=float,
        default=1.0,
        help="seconds between throughput snapshots (default 1)",
    )


def _bench(args: argparse.Namespace) -> int:
    import json

    from rxpipe.bench import bench, check_plot_path, plot_report

    if not 0 < args.interval < math.inf:  # not NaN either
        raise _usage(f"--interval: expected a number of seconds > 0. Received: {args.interval}")
    if args.train_steps is not None and args.train_steps < 1:
        raise _usage(f"--train-steps: expected an int >= 1. Received: {args.train_steps}")
    if args.plot:
        check_plot_path(args.plot)  # a bad --plot path fails now, not after the whole bench
    report = bench(_load_pipeline(args), args.train_steps, snapshot_interval=args.interval)
    if args.plot:
        plot_report(report, args.plot)
    if args.json:
        print(json.dumps(report.to_dict()))
        return EXIT_OK
    from rich.console import Console

    Console().print(report.table())
    if args.plot:
        print(f"plot saved to: {args.plot}")
    return EXIT_OK


def _add_serving_commands(commands: Any) -> None:
    predict = commands.add_parser(
        "predict",
        help="print the top labels a trained model gives images, arrays, JSON or CSV rows",
        description="Print a trained model's top labels (a regression model's values) for "
        "each sample of each INPUT, as they are predicted, 256 samples a model call. Every "
        "INPUT is checked before the first answer; a .csv file's header is, and its rows "
        "as they are read. A .csv file is for a model on a table (trained on collect.csv, or "
        "on a bundled table such as collect.wine, whose model card names its columns): "
        "it is read with the training data's CSV rules (delimiter, header or names, "
        "missing-value strings, encoding: from the bundle's pipeline.toml), each column "
        "the model takes by its name; the label column may be there or not, and another "
        "column the model does not take is not read (a note says which). A bad row stops "
        "the answers, naming the file, the line and the column.",
        epilog=_SERVING_EPILOG,
    )
    predict.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (or its model/)")
    predict.add_argument(
        "inputs",
        metavar="INPUT",
        nargs="+",
        help="an image file, .npy/.npz arrays, .json/.jsonl/.csv rows, a text, or a JSON row",
    )
    predict.add_argument("--top-k", type=int, default=3, help="labels per sample (default 3)")
    predict.add_argument("--json", action="store_true", help="print JSON for machines")

    serve = commands.add_parser(
        "serve",
        help="serve a trained model over HTTP (TensorFlow Serving's REST API)",
        epilog=_SERVING_EPILOG,
    )
    serve.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (or its model/)")
    serve.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8501, help="port; 0 for any (default 8501)")
    serve.add_argument("--name", help="the model name in URLs (default: the pipeline's name)")
    serve.add_argument(
        "--max-batch-size",
        type=int,
        default=32,
        help="most samples per model call; 1 turns batching off (default 32)",
    )
    serve.add_argument(
        "--max-wait-ms",
        type=float,
        default=2.0,
        help="longest a request waits for its batch to fill (default 2)",
    )
    serve.add_argument(
        "--max-body-mb", type=float, default=16.0, help="largest request body (default 16)"
    )
    serve.add_argument(
        "--max-image-pixels",
        type=int,
        default=50_000_000,
        help="largest uploaded image, width × height (default 50000000)",
    )
    serve.add_argument(
        "--max-batch-pixels",
        type=int,
        default=100_000_000,
        help="most pixels of uploaded images decoded in one model call, which bounds "
        "the memory decoding takes; a larger image runs alone (default 100000000)",
    )
    serve.add_argument(
        "--body-timeout-s",
        type=float,
        default=30.0,
        help="longest a request body may take to arrive; 408 past it (default 30)",
    )
    serve.add_argument("--top-k", type=int, default=5, help="labels /predict answers (default 5)")
    serve.add_argument(
        "--log-level",
        default="warning",
        choices=("critical", "error", "warning", "info", "debug"),
        help="server log level (default warning)",
    )


def _version() -> str:
    from rxpipe import __version__

    return __version__


def _run(args: argparse.Namespace) -> int:
    from rxpipe.errors import ConfigError
    from rxpipe.pipeline import Pipeline

    interactive = sys.stderr.isatty()
    log_format = args.log_format or (None if interactive and not args.no_progress else "console")
    options: dict[str, Any] = {
        "progress": False if args.no_progress else None,
        "log_format": log_format,
        "tensorboard": args.tensorboard,
    }
    if (args.pipeline is None) == (args.resume is None):
        raise ConfigError(
            "rxpipe run: expected a PIPELINE_FILE or --resume RUN_DIR (one of them). "
            f"Received: {'both' if args.pipeline else 'neither'}"
        )
    if args.resume is not None and args.runs_dir:
        raise ConfigError(
            "rxpipe run --resume: expected no --runs-dir (a resumed run stays in its own "
            f"directory). Received: --runs-dir {args.runs_dir!r} with --resume {args.resume!r}"
        )
    if args.tensorboard:
        from rxpipe.subscribers.tensorboard import check_available

        check_available("--tensorboard")
    if args.resume is not None:
        Pipeline.check_resume(args.resume, args.overrides, field="--resume")
        _import_tensorflow()
        result = Pipeline.resume(args.resume, args.overrides, **options)
    else:
        result = _load_pipeline(args).run(**options)
    for split, metrics in result.metrics.items():
        samples = f" ({metrics['samples']} samples)" if "samples" in metrics else ""
        for name in ("accuracy", "mae", "rmse", "r2"):
            if name in metrics:
                print(f"{split} {name}: {metrics[name]:.4f}{samples}")
    if "model" in result.artifacts:
        print(f"model saved to: {result.artifacts['model']}")
    print(f"run directory: {result.run_dir}")
    return EXIT_OK


def _predict(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise _usage(f"--top-k: expected an int >= 1. Received: {args.top_k}")
    from rxpipe.serving.bundle import Bundle, find_bundle

    find_bundle(args.run_dir)  # a missing bundle is reported before TensorFlow loads
    _import_tensorflow()
    from rxpipe.serving.predict import predict_inputs, prediction_lines, read_inputs

    bundle = Bundle.load(args.run_dir)
    inputs = read_inputs(bundle, args.inputs)  # checked before the first answer (a CSV: its header)
    for note in inputs.notes:
        _say(f"rxpipe predict: note: {note}")
    predictions = predict_inputs(bundle, inputs, args.top_k)
    for line in prediction_lines(predictions, inputs.width, as_json=args.json):
        print(line)  # as they come: `| head` needs no wait for the rest
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    if args.max_batch_size < 1 or args.max_wait_ms < 0 or args.max_body_mb <= 0:
        raise _usage(
            "expected --max-batch-size >= 1, --max-wait-ms >= 0 and --max-body-mb > 0. "
            f"Received: {args.max_batch_size}, {args.max_wait_ms}, {args.max_body_mb}"
        )
    for flag, pixels in (
        ("--max-image-pixels", args.max_image_pixels),
        ("--max-batch-pixels", args.max_batch_pixels),
    ):
        if pixels < 1:
            raise _usage(f"{flag}: expected an int >= 1. Received: {pixels}")
    if not 0 < args.body_timeout_s < math.inf:
        raise _usage(
            f"--body-timeout-s: expected a number of seconds > 0. Received: {args.body_timeout_s}"
        )
    from rxpipe.serving.bundle import find_bundle
    from rxpipe.serving.server import check_port, serve

    check_port(args.port)
    find_bundle(args.run_dir)  # a missing bundle is reported before TensorFlow loads
    _import_tensorflow()  # the model is loaded in this process

    try:
        serve(
            args.run_dir,
            host=args.host,
            port=args.port,
            name=args.name,
            max_batch_size=args.max_batch_size,
            max_wait_ms=args.max_wait_ms,
            max_body_bytes=int(args.max_body_mb * 1024 * 1024),
            default_top_k=args.top_k,
            log_level=args.log_level,
            max_image_pixels=args.max_image_pixels,
            body_timeout_s=args.body_timeout_s,
            max_batch_pixels=args.max_batch_pixels,
        )
    except OSError as error:  # the address is taken or not ours
        print(
            f"rxpipe serve: cannot listen on {args.host}:{args.port}: {error.strerror or error}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


def _usage(message: str) -> Exception:
    from rxpipe.errors import ConfigError

    return ConfigError(message)


def _plugins(args: argparse.Namespace) -> int:
    import inspect

    from rxpipe.registry import registry

    if args.name is not None:
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
    """Run the command line; return the exit code.

    0 ok, 1 the run failed, 2 a configuration or usage error, 130 Ctrl-C, 143 SIGTERM.
    """
    args = _parser().parse_args(argv)
    from rxpipe.interrupts import stopping_on_signals

    say = _json_say if getattr(args, "log_format", None) == "json" else _say
    shown = warnings.showwarning
    warnings.showwarning = _plugin_warnings(say, shown)
    try:
        with stopping_on_signals(signal.SIGINT, signal.SIGTERM) as signals:
            return _dispatch(args, signals, say)
    except BrokenPipeError:  # e.g. `rxpipe plugins | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return EXIT_OK
    finally:
        warnings.showwarning = shown


def _plugin_warnings(say: Callable[[str], None], shown: Any) -> Any:
    """``warnings.showwarning`` saying a plugin package that failed to load as a CLI line
    (``rxpipe: warning: entry point ...``, JSON with ``--log-format json``); other
    warnings as ``shown`` shows them."""

    def show(message: Any, category: Any, filename: str, lineno: int, *rest: Any) -> None:
        if issubclass(category, RuntimeWarning) and str(message).startswith("entry point "):
            say(f"rxpipe: warning: {message}")
        else:
            shown(message, category, filename, lineno, *rest)

    return show


def _dispatch(args: argparse.Namespace, signals: list[int], say: Callable[[str], None]) -> int:
    """Run the command ``args`` names; turn its errors into messages and exit codes."""
    from rxpipe.errors import (
        BundleError,
        ConfigError,
        PipelineCancelled,
        PredictionInputError,
        QualityGateError,
        RxpipeError,
        is_configuration_error,
    )

    try:
        if args.command == "run":
            return _run(args)
        if args.command == "predict":
            return _predict(args)
        if args.command == "serve":
            return _serve(args)
        if args.command == "bench":
            return _bench(args)
        return _plugins(args)
    except ConfigError as error:
        _print_run_dir(error, say, resumable=False)
        say(f"rxpipe: configuration error: {error}")
        return EXIT_USAGE
    except (BundleError, PredictionInputError) as error:
        say(f"rxpipe {args.command}: {error}")
        return EXIT_USAGE  # the RUN_DIR or INPUT the user named is not what is expected
    except (PipelineCancelled, KeyboardInterrupt) as error:
        _print_run_dir(error, say, resumable=args.command == "run")  # bench's runs are its own
        stopped = "; every stage was stopped" if args.command in ("run", "bench") else ""
        if signals and signals[0] == signal.SIGTERM:
            say(f"rxpipe: terminated (SIGTERM){stopped}")
            return EXIT_TERMINATED
        say(f"rxpipe: interrupted{stopped}")
        return EXIT_INTERRUPTED
    except RxpipeError as error:
        misconfigured = is_configuration_error(error)
        # resuming cannot mend a configuration (the same options fail again) or a quality
        # gate (training is done); it can go on after a crash (once the data is fixed)
        gate = isinstance(error, QualityGateError)
        _print_run_dir(
            error, say, resumable=args.command == "run" and not misconfigured and not gate
        )
        if misconfigured:
            # A parameter only the running stage could check (e.g. a file's column names).
            say(f"rxpipe: configuration error: {error}")
            return EXIT_USAGE
        say(f"rxpipe: run failed: {error}")
        return EXIT_FAILED


def _print_run_dir(error: BaseException, say: Callable[[str], None], *, resumable: bool) -> None:
    """Print the run directory of a run that stopped with ``error``, if one was made.

    :meth:`rxpipe.Pipeline.run` gives its errors the run's directory as ``run_dir``.
    When the run can go on (``resumable``: it was interrupted, or crashed after saving
    training checkpoints), the ``--resume`` command follows.
    """
    from rxpipe.errors import PipelineCancelled

    run_dir = getattr(error, "run_dir", None)
    interrupted = isinstance(error, PipelineCancelled | KeyboardInterrupt)
    for line in _run_dir_lines(run_dir, interrupted=interrupted, resumable=resumable):
        say(line)


def _say(line: str) -> None:
    print(line, file=sys.stderr)


def _json_say(line: str) -> None:
    """``line`` as a JSON log line, so that with --log-format json stderr is JSON only."""
    import json

    print(json.dumps({"event": "cli_message", "message": line}), file=sys.stderr)


def _run_dir_lines(run_dir: Path | None, *, interrupted: bool, resumable: bool = True) -> list[str]:
    """The lines naming ``run_dir`` (none for ``None``) and, if it can go on, how to resume.

    Example:
        >>> for line in _run_dir_lines(Path("runs/digits/20260101-abc"), interrupted=True):
        ...     print(line)
        rxpipe: run directory: runs/digits/20260101-abc
        rxpipe: resume with: rxpipe run --resume runs/digits/20260101-abc
    """
    import shlex

    if run_dir is None:
        return []
    lines = [f"rxpipe: run directory: {run_dir}"]
    if resumable and (interrupted or (Path(run_dir) / "checkpoints").is_dir()):
        lines.append(f"rxpipe: resume with: rxpipe run --resume {shlex.quote(str(run_dir))}")
    return lines
