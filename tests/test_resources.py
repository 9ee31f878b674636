"""Where shipped files resolve: environment override, then the package's copy, then the source tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnetctl import resources
from mnetctl.data import data_dir
from mnetctl.profiles import profiles_dir
from mnetctl.weights.registry import pretrained_dir

REPO = Path(__file__).resolve().parents[1]
RESOLVERS = {"pretrained": pretrained_dir, "profiles": profiles_dir, "data": data_dir}


@pytest.fixture
def no_overrides(monkeypatch):
    for env_var, _ in resources.KINDS.values():
        monkeypatch.delenv(env_var, raising=False)


def test_a_source_tree_reads_its_top_level_folders(no_overrides):
    assert resources.packaged_dir("profiles") is None  # nothing under mnetctl/_shipped in a checkout
    assert {k: f() for k, f in RESOLVERS.items()} == {
        "pretrained": REPO / "models" / "pretrained", "profiles": REPO / "profiles", "data": REPO / "data"}


def test_the_package_copy_wins_over_the_source_tree(no_overrides, monkeypatch, tmp_path):
    for rel in ("models/pretrained", "profiles", "data"):
        (tmp_path / "_shipped" / rel).mkdir(parents=True)
    monkeypatch.setattr(resources, "files", lambda package: tmp_path)
    assert {k: f() for k, f in RESOLVERS.items()} == {
        "pretrained": tmp_path / "_shipped" / "models" / "pretrained",
        "profiles": tmp_path / "_shipped" / "profiles",
        "data": tmp_path / "_shipped" / "data"}


@pytest.mark.parametrize("kind", sorted(resources.KINDS))
def test_the_environment_override_wins(kind, monkeypatch, tmp_path):
    monkeypatch.setattr(resources, "files", lambda package: tmp_path)
    (tmp_path / "_shipped" / resources.KINDS[kind][1]).mkdir(parents=True)
    monkeypatch.setenv(resources.KINDS[kind][0], str(tmp_path / "mine"))
    assert RESOLVERS[kind]() == tmp_path / "mine"

