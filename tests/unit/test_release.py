"""The release is stated once (shared.__version__): the package, the CLI and the health check say it."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from shared import __version__
from upgrader_cli.main import run

ROOT = Path(__file__).resolve().parents[2]


def test_the_package_takes_its_version_from_the_code():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "shared.__version__"}
    assert (
        "devtools" not in project["tool"]["setuptools"]["packages"] and "bench" not in project["tool"]["setuptools"]["packages"]
    )


def test_the_cli_prints_it(capsys):
    with pytest.raises(SystemExit) as done:
        run(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"teams-upgrader {__version__}"
