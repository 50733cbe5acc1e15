"""The packaging layout in setup.cfg lists every package of the source tree."""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_setup_cfg_lists_every_package() -> None:
    """Every folder with an __init__.py under rxpipe/ and operators/ is installed."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    found = set()
    for top, installed_as in (("rxpipe", "rxpipe"), ("operators", "rxpipe.operators")):
        for init in (ROOT / top).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((installed_as, *relative)))
    assert listed == found


def test_no_setting_is_duplicated_between_pyproject_and_setup_cfg() -> None:
    """setup.cfg holds only the package layout; everything else is in pyproject.toml."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert config.sections() == ["options"]
    assert set(config["options"]) == {"packages", "package_dir"}
