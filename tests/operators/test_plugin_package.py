"""The entry-point mechanism: an installed third-party package adds plugins to the registry.

The example package (examples/plugin_package) is built and installed with pip into a
temporary folder (not into the shared virtual environment); subprocesses with that
folder on their path must see its plugin through the registry and ``rxpipe plugins``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
PACKAGE = Path(__file__).resolve().parents[2] / "examples" / "plugin_package"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example package, pip-installed into a temporary target folder."""
    work = tmp_path_factory.mktemp("plugin")
    source = work / "source"
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = work / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return target


def env_with(target: Path) -> dict[str, str]:
    """The environment of a process that sees the installed package."""
    return {**os.environ, "PYTHONPATH": str(target), "TF_CPP_MIN_LOG_LEVEL": "3"}


def test_the_registry_loads_the_entry_point(installed: Path) -> None:
    """registry.get finds the plugin the package registers, and a pipeline can use it."""
    script = (
        "import numpy as np\n"
        "from rxpipe import registry\n"
        "from rxpipe.testing import collect, from_arrays\n"
        "info = registry.get('process.clip')\n"
        "stage = registry.create('process.clip', {'high': 0.5}, 'plugins[1]')\n"
        "[b] = collect(from_arrays(np.array([[0.25], [2.0]])).pipe(stage))\n"
        "print(info.kind.value, info.summary.split(';')[0], b.features.ravel().tolist())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=env_with(installed),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "process Clip feature values to [low, high] [0.25, 0.5]"


def test_the_example_package_tests_pass(installed: Path) -> None:
    """The package's own tests (written with rxpipe.testing) pass against the installed package."""
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PACKAGE / "tests")],
        env=env_with(installed),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=installed,
    )
    assert out.returncode == 0, out.stdout[-3000:]
    assert "5 passed" in out.stdout


def test_rxpipe_plugins_lists_and_shows_it(installed: Path) -> None:
    """`rxpipe plugins` lists the plugin; `rxpipe plugins process.clip` shows its parameters."""
    listing = subprocess.run(
        [sys.executable, "-m", "rxpipe", "plugins"],
        env=env_with(installed),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "process.clip" in listing.stdout
    shown = subprocess.run(
        [sys.executable, "-m", "rxpipe", "plugins", "process.clip"],
        env=env_with(installed),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "low: float  (default 0.0)" in shown.stdout
    assert "high: float  (default 1.0)" in shown.stdout


def test_a_broken_entry_point_costs_only_its_plugins(tmp_path: Path) -> None:
    """An entry point whose module fails to import is warned about; the other plugins work."""
    info = tmp_path / "broken_plugins-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugins\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[rxpipe.operators]\nbroken = no_such_module_here\nhalfway = halfway_plugins\n"
    )
    (tmp_path / "halfway_plugins.py").write_text(  # registers a plugin, then fails
        "from reactivex import operators as ops\n"
        "from rxpipe import plugin\n"
        "@plugin('process.halfway')\n"
        "def halfway(x: int = 1):\n"
        "    return ops.map(lambda b: b)\n"
        "raise ImportError('a dependency is missing')\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "rxpipe", "plugins"],
        env=env_with(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "access.batch" in out.stdout
    assert "process.halfway" not in out.stdout  # from a module that failed to import
    assert "entry point 'halfway' = 'halfway_plugins' of broken-plugins: " in out.stderr
    assert "rxpipe: warning: entry point 'broken' = 'no_such_module_here' of broken-plugins: " in (
        out.stderr
    )
    assert "RuntimeWarning" not in out.stderr  # a CLI line, not Python's warning format
    missing = subprocess.run(
        [sys.executable, "-m", "rxpipe", "plugins", "process.from_broken"],
        env=env_with(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2
    assert "It may be in a package that failed to load: entry point 'broken'" in missing.stderr


def test_the_code_blocks_of_the_plugin_guide_run(tmp_path: Path) -> None:
    """docs/plugins.md's Python blocks run in order as one file, and the tests they define pass."""
    guide = (PACKAGE.parents[1] / "docs" / "plugins.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", guide, re.S)
    assert len(blocks) >= 8
    script = tmp_path / "guide.py"
    script.write_text("\n\n".join(blocks))
    runner = (
        "import runpy\n"
        f"names = runpy.run_path({str(script)!r}, run_name='guide')\n"
        "for name, test in sorted(names.items()):\n"
        "    if name.startswith('test_'):\n"
        "        test()\n"
        "        print('passed', name)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", runner],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("passed test_") == 4
