"""`rxpipe bench --plot PATH`: the path is checked (matplotlib can write its suffix)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rxpipe.bench import BenchReport, StageBench, check_plot_path, plot_report
from rxpipe.cli import main
from rxpipe.errors import ConfigError
from rxpipe.events import StageRate, ThroughputSnapshot


def _report() -> BenchReport:
    """A one-stage report with two throughput snapshots."""
    stage = StageBench("collect.digits", "collect", 2, 64, 2.0, 64.0, 0.5, 0.5)
    snapshots = tuple(
        ThroughputSnapshot(
            run_id="r",
            seq=i,
            time=0.0,
            elapsed_s=0.5 * (i + 1),
            interval_s=0.5,
            stages=(StageRate("collect.digits", i + 1, 32 * (i + 1), 2.0, 64.0, 0.5),),
        )
        for i in range(2)
    )
    return BenchReport("p", "", 1.0, (stage,), "collect.digits", "", snapshots)


@pytest.mark.parametrize("name", ["x.txt", "x.csv", "stages"])
def test_unsupported_suffixes_are_refused_naming_plot_the_suffixes_and_the_path(
    tmp_path: Path, name: str
) -> None:
    """A suffix matplotlib cannot write (or none) is a ConfigError naming --plot and the path."""
    path = tmp_path / name
    with pytest.raises(ConfigError) as caught:
        check_plot_path(path)
    message = str(caught.value)
    assert message.startswith("--plot: expected a file name ending in one of ")
    assert all(f".{s}," in message for s in ("png", "svg", "pdf"))
    assert message.endswith(f"Received: {str(path)!r}" + ("" if path.suffix else " (no suffix)"))
    assert not path.exists()


@pytest.mark.parametrize("name", ["out.png", "out.svg", "out.pdf", "OUT.PNG", "sub/dir/out.jpg"])
def test_supported_suffixes_are_accepted(tmp_path: Path, name: str) -> None:
    """Suffixes matplotlib writes, in any case, pass and come back as a Path (nothing is made)."""
    assert check_plot_path(str(tmp_path / name)) == tmp_path / name
    assert list(tmp_path.iterdir()) == []


def test_a_directory_is_refused(tmp_path: Path) -> None:
    """An existing directory named like a chart is refused, not left for savefig to fail on."""
    (tmp_path / "charts.png").mkdir()
    with pytest.raises(ConfigError, match=r"--plot: expected a file name for the chart\. "):
        check_plot_path(tmp_path / "charts.png")


def test_missing_matplotlib_is_reported_before_the_bench(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without matplotlib the check says to install rxpipe[plot] (it can't be uninstalled here)."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backend_bases", None)
    with pytest.raises(
        ConfigError, match=r"--plot: expected matplotlib \(pip install 'rxpipe\[plot\]'\)"
    ):
        check_plot_path("out.png")


def test_plot_report_refuses_an_unsupported_suffix_with_a_config_error(tmp_path: Path) -> None:
    """plot_report checks the path first: a ConfigError, not matplotlib's ValueError."""
    with pytest.raises(ConfigError, match=r"^--plot: expected a file name ending in one of "):
        plot_report(_report(), tmp_path / "x.txt")
    assert not (tmp_path / "x.txt").exists()


def test_plot_report_writes_the_file_type_of_the_suffix(tmp_path: Path) -> None:
    """An .svg path gets an SVG chart (the suffix picks the format)."""
    out = plot_report(_report(), tmp_path / "charts" / "stages.svg")
    assert out == tmp_path / "charts" / "stages.svg"
    assert b"<svg" in out.read_bytes()[:1000]


def test_cli_bench_with_an_unsupported_plot_suffix_exits_2_with_the_reason(
    tmp_path: Path, runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rxpipe bench small.toml --plot x.txt` is a configuration error (exit 2), no traceback."""
    pipeline = tmp_path / "small.toml"
    pipeline.write_text(
        '[pipeline]\nname = "small"\n\n[[plugins]]\nuse = "collect.digits"\nlimit = 64\n\n'
        '[[plugins]]\nuse = "access.batch"\nsize = 32\n'
    )
    plot = tmp_path / "x.txt"
    argv = ["bench", str(pipeline), "--plot", str(plot), "--runs-dir", str(runs_dir)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rxpipe: configuration error: --plot: expected a file name ending in ")
    assert f"Received: {str(plot)!r}" in err
    assert not plot.exists()
    assert not runs_dir.exists()  # nothing ran


@pytest.mark.parametrize("count", [0, 1])
def test_a_chart_of_too_few_snapshots_says_why_it_has_no_curve(tmp_path: Path, count: int) -> None:
    """A pass shorter than the interval gives one snapshot or none: the title says so."""
    import attrs
    import matplotlib

    report = _report()
    report = attrs.evolve(report, snapshots=report.snapshots[:count], wall_s=0.043)
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text in the SVG
        svg = plot_report(report, tmp_path / "stages.svg").read_text()
    snapshots = "1 snapshot" if count else "no snapshots"
    assert f"{snapshots}: the pass took 0.043 s; a shorter --interval draws a curve" in svg
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        svg = plot_report(_report(), tmp_path / "curve.svg").read_text()
    assert "p: throughput per stage" in svg
    assert "a shorter --interval" not in svg
