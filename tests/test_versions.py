"""Installed versions against the tested ranges (empo.versions): a warning outside them, an error where TRL's private
surface differs; pyproject's lower bounds are the lowest tested versions, and docs/install.md shows the one table."""

import tomllib
from pathlib import Path

import pytest

import empo.versions as versions
from empo.errors import PreflightError
from empo.launch import preflight

REPO = Path(__file__).resolve().parents[1]


def test_an_untested_version_is_a_warning_naming_package_version_and_range(monkeypatch):
    installed = {"torch": "2.16.0", "transformers": "5.20.1", "trl": "1.16.0", "peft": "0.16.0"}
    monkeypatch.setattr(versions, "version", lambda name: installed.get(name) or versions.TESTED[name][0])
    lines = versions.untested()
    assert len(lines) == 2
    assert lines[0].startswith("torch 2.16.0 is outside the versions empo is tested on (2.11.0 to 2.15.0;")
    assert lines[1].startswith("peft 0.16.0 is outside the versions empo is tested on (0.18.0 to 0.21.2;")
    warned = []
    versions.check_installed(warn=warned.append)  # TRL's surface is this environment's: no error
    assert warned == lines
    check = preflight.versions(needs_vllm=False, needs_deepspeed=False)
    assert check.ok and "untested: torch 2.16.0" in check.message


def test_a_local_build_of_a_tested_release_is_tested(monkeypatch):
    monkeypatch.setattr(versions, "version", lambda name: {"torch": "2.13.0+cpu"}.get(name, versions.TESTED[name][0]))
    assert versions.untested() == []


def test_a_trl_whose_private_surface_changed_is_an_error_before_any_model_loads(monkeypatch):
    from trl import GRPOTrainer

    monkeypatch.delattr(GRPOTrainer, "_get_per_token_logps_and_entropies")
    with pytest.raises(PreflightError, match="_get_per_token_logps_and_entropies"):
        versions.check_installed(warn=lambda line: None)
    check = preflight.versions(needs_vllm=False, needs_deepspeed=False)
    assert not check.ok and "private surface" in check.message


def test_pyproject_lower_bounds_are_the_lowest_tested_and_the_manual_shows_the_table():
    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    bounds = {}
    for line in project["dependencies"]:
        req = Requirement(line)
        bounds[req.name] = {s.operator: s.version for s in req.specifier}
    page = (REPO / "docs" / "install.md").read_text()
    for name, (low, high, _) in versions.TESTED.items():
        assert bounds[name][">="].split(".")[:2] == low.split(".")[:2], name  # the range starts where tests did
        assert f"| {name} | {low} | {high} |" in page, name
