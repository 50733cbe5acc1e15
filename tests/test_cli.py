"""Tests for the rxpipe command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rxpipe import Batch, ConfigError
from rxpipe.cli import _run_dir_lines, main
from rxpipe.flow import map_batches
from rxpipe.registry import plugin
from rxpipe.stage import Operator
from rxpipe.tf_import import STARTUP_NOTICES


@plugin("custom.test_cli_late_check")
def late_check(column: str = "nope") -> Operator[Batch, Batch]:
    """Fail on the first batch with a ConfigError, like a stage checking a column name."""

    def check(batch: Batch) -> Batch:
        raise ConfigError(
            f"expected a column of the data. Received: {column!r}",
            "custom.test_cli_late_check.column",
        )

    return map_batches("custom.test_cli_late_check", check)


@plugin("custom.test_cli_fails")
def fails() -> Operator[Batch, Batch]:
    """Fail on the first batch with a plain error, as a buggy stage does."""

    def fail(batch: Batch) -> Batch:
        raise ValueError("boom")

    return map_batches("custom.test_cli_fails", fail)


def test_plugins_lists_every_registered_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    """`rxpipe plugins` prints each plugin with its summary and parameters."""
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "train.fit" in out
    assert "epochs=10" in out


def test_plugins_name_shows_one_in_full(capsys: pytest.CaptureFixture[str]) -> None:
    """`rxpipe plugins NAME` prints the docstring and typed parameters."""
    assert main(["plugins", "access.split"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("access.split  (access)")
    assert "train: float  (default 0.8)" in out


def test_unknown_plugin_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown plugin exits 2 with suggestions (in any case); an empty name is no name."""
    assert main(["plugins", "train.fitt"]) == 2
    assert "Did you mean: train.fit" in capsys.readouterr().err
    assert main(["plugins", "TRAIN.FIT"]) == 2
    assert capsys.readouterr().err.endswith("Did you mean: train.fit?\n")
    assert main(["plugins", ""]) == 2
    assert "Received: '', an unknown plugin" in capsys.readouterr().err


def test_a_reader_that_leaves_early_ends_the_output_quietly() -> None:
    """`rxpipe plugins | head -1`: no BrokenPipeError traceback, exit 0."""
    for _ in range(3):  # the reader leaves at a different point each time
        out = subprocess.run(
            f"{sys.executable} -m rxpipe plugins | head -1",
            shell=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.stderr == ""
        assert len(out.stdout.splitlines()) == 1


def test_config_errors_exit_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad parameter type exits 2 and names plugins[i].param and the file, or the --set
    that gave the value."""
    path = tmp_path / "bad.toml"
    path.write_text(
        '[[plugins]]\nuse = "collect.digits"\n[[plugins]]\nuse = "models.mlp"\n'
        '[[plugins]]\nuse = "train.fit"\nepochs = "ten"\n'
    )
    assert main(["run", str(path), "--runs-dir", str(tmp_path)]) == 2
    assert (
        f"plugins[2].epochs: expected int. Received: 'ten' (str) in pipeline file {str(path)!r}\n"
    ) in capsys.readouterr().err
    overridden = ["--set", "train.fit.batch_size=0", "--set", "train.fit.epochs=2"]
    assert main(["run", str(path), "--runs-dir", str(tmp_path), *overridden]) == 2
    assert (
        "plugins[2].batch_size: expected an int >= 1. Received: 0 "
        "(set by --set 'train.fit.batch_size=0')\n"
    ) in capsys.readouterr().err


@pytest.mark.slow
def test_a_failing_run_exits_non_zero_naming_the_stage(tmp_path: Path) -> None:
    """A pipeline whose training gets no train split exits 1, naming the stage and the fix."""
    path = tmp_path / "nosplit.toml"
    path.write_text(
        '[pipeline]\nname = "nosplit"\n'
        '[[plugins]]\nuse = "collect.digits"\n'
        '[[plugins]]\nuse = "process.normalize"\n'
        '[[plugins]]\nuse = "models.cnn"\n'
        '[[plugins]]\nuse = "train.fit"\nepochs = 1\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "rxpipe", "run", str(path), "--runs-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1
    assert "stage 'train.fit' failed" in out.stderr
    assert "add access.split" in out.stderr
    assert "run_failed" in out.stderr


def test_help_lists_the_commands() -> None:
    """`rxpipe --help` names the run and plugins commands."""
    out = subprocess.run(
        [sys.executable, "-m", "rxpipe", "--help"], capture_output=True, text=True, check=True
    )
    assert "run" in out.stdout
    assert "plugins" in out.stdout


def test_a_bad_training_name_exits_2_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown optimizer set with --set is a configuration error naming the field."""
    path = tmp_path / "fit.toml"
    path.write_text(
        '[[plugins]]\nuse = "collect.digits"\n[[plugins]]\nuse = "models.mlp"\n'
        '[[plugins]]\nuse = "train.fit"\n'
    )
    runs = tmp_path / "runs"
    argv = ["run", str(path), "--runs-dir", str(runs), "--set", 'train.fit.optimizer="nope"']
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "configuration error: plugins[2].optimizer: expected a Keras optimizer name" in err
    assert err.endswith("(set by --set 'train.fit.optimizer=\"nope\"')\n")
    assert not runs.exists()  # no run was started


def test_a_config_error_found_by_a_running_stage_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ConfigError a stage raises while running (wrapped in a StageError) exits 2 too."""
    path = tmp_path / "late.toml"
    path.write_text(
        '[[plugins]]\nuse = "collect.iris"\n[[plugins]]\nuse = "custom.test_cli_late_check"\n'
    )
    assert main(["run", str(path), "--runs-dir", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "rxpipe: configuration error: stage 'custom.test_cli_late_check' failed" in err
    assert "custom.test_cli_late_check.column: expected a column" in err


def test_resume_with_runs_dir_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--runs-dir cannot move a resumed run (it stays in RUN_DIR): exit 2, saying so."""
    assert main(["run", "--resume", str(tmp_path), "--runs-dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "--resume: expected no --runs-dir" in err
    assert not (tmp_path / "x").exists()


def test_resume_help_says_what_combines_with_it(capsys: pytest.CaptureFixture[str]) -> None:
    """`rxpipe run --help` says --resume goes with --set, not PIPELINE_FILE or --runs-dir."""
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "not with PIPELINE_FILE or --runs-dir" in help_text


@pytest.mark.slow
def test_a_runs_dir_of_any_unicode_is_used_as_given(tmp_path: Path) -> None:
    """--runs-dir with a character outside the BMP goes where it says (not to a '"' folder)."""
    path = tmp_path / "p.toml"
    path.write_text('[[plugins]]\nuse = "collect.iris"\n[[plugins]]\nuse = "access.batch"\n')
    runs = tmp_path / "😀 runs"
    assert main(["run", str(path), "--runs-dir", str(runs), "--no-progress"]) == 0
    assert [p.name for p in runs.iterdir()] == ["p"]


def test_a_runs_dir_that_is_a_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--runs-dir naming a file: a configuration error naming --runs-dir, no traceback."""
    path = tmp_path / "p.toml"
    path.write_text('[[plugins]]\nuse = "collect.iris"\n')
    blocker = tmp_path / "taken"
    blocker.write_text("")
    assert main(["run", str(path), "--runs-dir", str(blocker), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "rxpipe: configuration error: --runs-dir: expected a folder to create run "
        f"directories in (or a path where one can be made). Received: {str(blocker)!r}, where "
        f"{str(blocker)!r} is a file, not a folder\n"
    )


def test_plugins_out_of_order_exit_2_naming_plugins_i(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A train.fit without a models stage before it is a configuration error before the run."""
    path = tmp_path / "order.toml"
    path.write_text(
        '[[plugins]]\nuse = "collect.digits"\n[[plugins]]\nuse = "access.split"\n'
        '[[plugins]]\nuse = "train.fit"\n'
    )
    runs = tmp_path / "runs"
    assert main(["run", str(path), "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err
    assert "configuration error: plugins[2]: expected a models.* stage before train.fit" in err
    assert "Received: train.fit after access.split, which passes on data batches" in err
    assert not runs.exists()


RXPIPE_RUN = (sys.executable, "-m", "rxpipe", "run")

LONG_RUN = """
[pipeline]
name = "long"
[[plugins]]
use = "collect.wine"
[[plugins]]
use = "access.split"
[[plugins]]
use = "access.batch"
size = 16
[[plugins]]
use = "models.mlp"
hidden = [8]
[[plugins]]
use = "train.fit"
epochs = 100000
"""


@pytest.mark.slow
def test_sigterm_cancels_the_run_as_ctrl_c_does(tmp_path: Path) -> None:
    """SIGTERM mid-training: run_failed is logged, run.json says failed, the exit code is 143."""
    path = tmp_path / "long.toml"
    path.write_text(LONG_RUN)
    argv = [*RXPIPE_RUN, str(path), "--runs-dir", str(tmp_path)]
    with subprocess.Popen(
        [*argv, "--log-format", "json"], stderr=subprocess.PIPE, text=True
    ) as run:
        assert run.stderr is not None
        try:
            for line in run.stderr:  # wait until training is under way
                if '"epoch_ended"' in line:
                    break
            run.send_signal(signal.SIGTERM)
            err = run.stderr.read()
            code = run.wait(timeout=60)
        finally:
            run.kill()  # if it is still running, the test failed: leave no process behind
    assert code == 143
    said = [json.loads(line) for line in err.splitlines()]  # JSON lines only, as asked
    messages = [e["message"] for e in said if e["event"] == "cli_message"]
    [run_dir] = (tmp_path / "long").iterdir()
    assert messages == [
        f"rxpipe: run directory: {run_dir}",
        f"rxpipe: resume with: rxpipe run --resume {run_dir}",
        "rxpipe: terminated (SIGTERM); every stage was stopped",
    ]
    state = json.loads((run_dir / "run.json").read_text())
    assert state["status"] == "failed"
    assert state["error"] == "the run was interrupted (SIGTERM); every stage was stopped"
    last = json.loads((run_dir / "events.jsonl").read_text().splitlines()[-1])
    assert (last["event"], last["error_type"]) == ("run_failed", "PipelineCancelled")


@pytest.mark.slow
def test_help_names_the_exit_codes_and_imports_no_tensorflow() -> None:
    """`rxpipe --help` documents 130 and 143 and leaves TensorFlow unimported."""
    script = (
        "import contextlib, sys\n"
        "from rxpipe.cli import main\n"
        "with contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    text = " ".join(out.stdout.split())
    assert "130 interrupted (Ctrl-C), 143 terminated (SIGTERM)" in text
    assert out.stdout.splitlines()[-1] == "False False"


@pytest.mark.slow
def test_run_prints_no_tensorflow_start_up_notices(tmp_path: Path) -> None:
    """With TF_CPP_MIN_LOG_LEVEL unset, a training run's stderr has no cuInit-style notices."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    wine = Path(__file__).parents[1] / "examples" / "wine.toml"
    out = subprocess.run(
        [*RXPIPE_RUN, str(wine), "--set", "train.fit.epochs=1", "--runs-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "run_completed" in out.stderr
    assert [line for line in out.stderr.splitlines() if STARTUP_NOTICES.search(line)] == []


@pytest.mark.slow
def test_configuration_mistakes_exit_2_before_tensorflow_is_imported(tmp_path: Path) -> None:
    """Typos, wrong types, bad paths and ranges exit 2 with their message, TensorFlow unloaded."""
    (tmp_path / "typo.toml").write_text('[[plugins]]\nuse = "collect.digit"\n')
    (tmp_path / "nosource.toml").write_text('[[plugins]]\nuse = "access.batch"\nsize = 8\n')
    (tmp_path / "afile").write_text("")
    digits = Path(__file__).parents[1] / "examples" / "digits.toml"
    runs, nowhere = tmp_path / "runs", tmp_path / "nowhere"
    to_runs = f"--runs-dir {runs}"
    cases = {  # the message expected: the command line (tmp_path has no spaces)
        "plugins[0].use: expected a registered plugin name (see `rxpipe plugins`). Received: "
        "'collect.digit', an unknown plugin.": f"run {tmp_path}/typo.toml {to_runs}",
        "plugins[6].epochs: expected int. Received: 'ten' (str)": (
            f"run {digits} --set train.fit.epochs=ten {to_runs}"
        ),
        "plugins[0]: expected a collect.* stage first": f"run {tmp_path}/nosource.toml {to_runs}",
        "--runs-dir: expected a folder to create run directories in": (
            f"run {digits} --runs-dir {tmp_path}/afile"
        ),
        "--max-image-pixels: expected an int >= 1. Received: 0": (
            f"serve {nowhere} --max-image-pixels 0"
        ),
        "--body-timeout-s: expected a number of seconds > 0. Received: inf": (
            f"serve {nowhere} --body-timeout-s inf"
        ),
        "--interval: expected a number of seconds > 0. Received: nan": (
            f"bench {digits} --interval nan {to_runs}"
        ),
        "--resume: expected the directory of an earlier run": f"run --resume {nowhere}",
        "--train-steps: expected an int >= 1. Received: 0": (
            f"bench {digits} --train-steps 0 {to_runs}"
        ),
        f"rxpipe predict: {nowhere}: expected a run directory": f"predict {nowhere} [1]",
        f"rxpipe serve: {nowhere}: expected a run directory": f"serve {nowhere}",
    }
    argvs = [line.split() for line in cases.values()]
    script = (
        "import json, sys\n"
        "from rxpipe.cli import main\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    code = main(argv)\n"
        "    print(json.dumps([code, 'tensorflow' in sys.modules]), flush=True)\n"
        "    print('-- case end', file=sys.stderr, flush=True)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, json.dumps(argvs)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results = [json.loads(line) for line in out.stdout.splitlines()]
    messages = out.stderr.split("-- case end\n")[:-1]
    for expected, argv, (code, tensorflow), message in zip(
        cases, argvs, results, messages, strict=True
    ):
        assert (code, tensorflow) == (2, False), (argv, message)
        assert expected in message, (argv, message)
    assert not runs.exists()


def test_resume_of_a_missing_directory_exits_2_saying_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--resume names the directory and why it is not an earlier run's."""
    assert main(["run", "--resume", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err == (
        "rxpipe: configuration error: --resume: expected the directory of an earlier run "
        "(holding run.json and pipeline.toml, and checkpoints/ once an epoch completed). "
        f"Received: {str(tmp_path / 'nowhere')!r}, "
        "which does not exist\n"
    )
    (tmp_path / "run.json").write_text("{}")
    assert main(["run", "--resume", str(tmp_path)]) == 2
    assert "which holds no pipeline.toml" in capsys.readouterr().err


def test_bench_with_no_train_steps_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rxpipe bench --train-steps 0` exits 2 naming the option, and runs nothing."""
    path = tmp_path / "p.toml"
    path.write_text('[[plugins]]\nuse = "collect.iris"\n')
    runs = tmp_path / "runs"
    assert main(["bench", str(path), "--train-steps", "0", "--runs-dir", str(runs)]) == 2
    assert capsys.readouterr().err == (
        "rxpipe: configuration error: --train-steps: expected an int >= 1. Received: 0\n"
    )
    assert not runs.exists()


@pytest.mark.parametrize("command", [["predict", "[1]"], ["serve"]])
def test_predict_and_serve_without_a_bundle_exit_2(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A RUN_DIR holding no model bundle is a usage error (2), as a missing INPUT is."""
    argv = [command[0], str(tmp_path / "nowhere"), *command[1:]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rxpipe {command[0]}: {tmp_path / 'nowhere'}: expected a run directory")
    assert "model/model_card.json" in err


@pytest.mark.parametrize("command", ["predict", "serve"])
def test_predict_and_serve_help_give_the_exit_statuses(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rxpipe predict --help` says a RUN_DIR without a bundle exits 2."""
    with pytest.raises(SystemExit):
        main([command, "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "2 a usage error: RUN_DIR holds no readable model bundle" in help_text


def test_tensorboard_without_its_package_exits_2_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--tensorboard with tensorboard not installed: exit 2 naming the option, no run made."""
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    path = tmp_path / "p.toml"
    path.write_text('[[plugins]]\nuse = "collect.iris"\n')
    runs = tmp_path / "runs"
    assert main(["run", str(path), "--runs-dir", str(runs), "--tensorboard"]) == 2
    assert capsys.readouterr().err.startswith(
        "rxpipe: configuration error: --tensorboard: expected the tensorboard package to be "
        "installed (TensorFlow no longer ships it): pip install 'rxpipe[tensorboard]'"
    )
    assert not runs.exists()


def test_a_failed_run_prints_its_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run that fails names its run directory just before the failure line."""
    path = tmp_path / "fails.toml"
    path.write_text(
        '[pipeline]\nname = "fails"\n'
        '[[plugins]]\nuse = "collect.iris"\n[[plugins]]\nuse = "custom.test_cli_fails"\n'
    )
    assert main(["run", str(path), "--runs-dir", str(tmp_path), "--no-progress"]) == 1
    [run_dir] = (tmp_path / "fails").iterdir()
    lines = capsys.readouterr().err.splitlines()
    assert lines[-2] == f"rxpipe: run directory: {run_dir}"
    assert lines[-1].startswith("rxpipe: run failed: stage 'custom.test_cli_fails' failed")
    assert not any(line.startswith("rxpipe: resume with") for line in lines)


def test_a_stopped_run_can_be_resumed_once_it_saved_checkpoints(tmp_path: Path) -> None:
    """The --resume command is offered for an interrupted run, or one with checkpoints/."""
    run_dir = tmp_path / "my runs" / "20260101-abc"
    run_dir.mkdir(parents=True)
    resume = f"rxpipe: resume with: rxpipe run --resume '{run_dir}'"
    assert _run_dir_lines(None, interrupted=True) == []
    assert _run_dir_lines(run_dir, interrupted=False) == [f"rxpipe: run directory: {run_dir}"]
    assert _run_dir_lines(run_dir, interrupted=True)[1:] == [resume]
    (run_dir / "checkpoints").mkdir()
    assert _run_dir_lines(run_dir, interrupted=False)[1:] == [resume]
    # a configuration error or a missed quality gate fails again on resume: no offer
    assert _run_dir_lines(run_dir, interrupted=False, resumable=False)[1:] == []


def test_a_missed_quality_gate_offers_no_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Training finished (with checkpoints) and the gate failed: resuming would only fail
    the gate again, so only the run directory is printed."""
    path = tmp_path / "gate.toml"
    path.write_text(
        '[pipeline]\nname = "gate"\n'
        '[[plugins]]\nuse = "collect.iris"\n[[plugins]]\nuse = "access.split"\n'
        '[[plugins]]\nuse = "access.batch"\nsize = 32\n[[plugins]]\nuse = "models.mlp"\n'
        '[[plugins]]\nuse = "train.fit"\nepochs = 1\n'
        '[[plugins]]\nuse = "evaluate.classification"\nmin_accuracy = 1.0\n'
    )
    assert main(["run", str(path), "--runs-dir", str(tmp_path), "--no-progress"]) == 1
    [run_dir] = (tmp_path / "gate").iterdir()
    assert (run_dir / "checkpoints").is_dir()
    lines = capsys.readouterr().err.splitlines()
    assert lines[-2] == f"rxpipe: run directory: {run_dir}"
    assert lines[-1].startswith("rxpipe: run failed: ")
    assert "accuracy" in lines[-1]
    assert not any(line.startswith("rxpipe: resume with") for line in lines)


@pytest.mark.slow
def test_with_json_logs_every_line_on_stderr_is_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--log-format json: the CLI's own closing lines (run directory, failure) are JSON too."""
    path = tmp_path / "gate.toml"
    path.write_text(
        '[[plugins]]\nuse = "collect.iris"\n[[plugins]]\nuse = "access.split"\n'
        '[[plugins]]\nuse = "access.batch"\nsize = 16\n[[plugins]]\nuse = "models.mlp"\n'
        '[[plugins]]\nuse = "train.fit"\nepochs = 1\nlearning_rate = 1e-6\n'
        '[[plugins]]\nuse = "evaluate.classification"\nmin_accuracy = 1.0\n'
    )
    code = main(["run", str(path), "--runs-dir", str(tmp_path / "runs"), "--log-format", "json"])
    assert code == 1
    lines = capsys.readouterr().err.splitlines()
    events = [json.loads(line) for line in lines]  # every line parses
    said = [e["message"] for e in events if e["event"] == "cli_message"]
    assert said[0].startswith("rxpipe: run directory: ")
    assert said[-1].startswith("rxpipe: run failed: ")
    assert any(e["event"] == "run_failed" for e in events)
