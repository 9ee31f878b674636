"""A non-editable install works without the source tree: profiles, checkpoints and sample images ship inside.

A module fixture copies the repository's buildable files to a scratch folder, builds an sdist and a wheel
from that sdist (`python -m build`, in a tool venv), installs the wheel into a fresh venv (dependencies from
the package registry) and the tests run its `mnetctl` from another folder, with no PYTHONPATH and no
MNETCTL_* variables. Nothing may be written into the venv's site-packages.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from mnetctl.weights.registry import DETECTORS, EXTRA_FILES, PRETRAINED, SEGMENTATION

pytestmark = pytest.mark.venv

REPO = Path(__file__).resolve().parents[1]
# What a build reads; the rest of the checkout (tests, docs, built models, caches) stays behind.
BUILD_INPUTS = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "mnetctl", "models/pretrained", "profiles",
                "data/imagenet-sample", "data/coco-10", "data/segmentation")
SHIPPED = {"pretrained": "models/pretrained", "profiles": "profiles", "data": "data"}


def _run(*cmd, cwd: Path | None = None, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} -> {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def _clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("MNETCTL_")}
    return {**env, **extra}


def _venv(path: Path) -> Path:
    _run(sys.executable, "-m", "venv", path)
    return path / "bin" / "python"


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.suffix != ".pyc"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    for rel in BUILD_INPUTS:
        if (REPO / rel).is_dir():
            shutil.copytree(REPO / rel, src / rel, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    tool = _venv(root / "tool")
    _run(tool, "-m", "pip", "install", "-q", "build")
    _run(tool, "-m", "build", "--outdir", root / "dist", src, env=_clean_env())  # sdist, then the wheel from it
    (sdist,) = (root / "dist").glob("mnetctl-*.tar.gz")
    (wheel,) = (root / "dist").glob("mnetctl-*.whl")
    py = _venv(root / "venv")
    _run(py, "-m", "pip", "install", "-q", wheel, env=_clean_env())
    site = Path(_run(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    work = root / "work"
    work.mkdir()
    return {"sdist": sdist, "wheel": wheel, "py": py, "bin": py.parent, "site": site, "work": work,
            "before": _listing(site), "env": _clean_env(MPLCONFIGDIR=str(root / "mpl"))}


def _mnetctl(inst: dict, *args: str, **env: str) -> subprocess.CompletedProcess:
    return _run(inst["bin"] / "mnetctl", *args, cwd=inst["work"], env={**inst["env"], **env}, timeout=600)


def _shipped_files() -> list[str]:
    """Repository-relative paths that must ship: checkpoints with their licences, profiles, sample data."""
    ckpts = {f for c in PRETRAINED for f in c.files} | set(EXTRA_FILES) | {f for c in DETECTORS for f in (c.file, c.labels)}
    ckpts |= {f for c in SEGMENTATION for f in c.files} | {c.labels for c in SEGMENTATION if c.labels}
    licences = {str(p.relative_to(REPO / "models/pretrained")) for p in (REPO / "models/pretrained").glob("*/LICENSE*")}
    assert {Path(f).parts[0] for f in ckpts} <= {Path(f).parts[0] for f in licences}, "a checkpoint folder lacks a LICENSE"
    paths = [f"models/pretrained/{f}" for f in sorted(ckpts | licences | {"coral/imagenet_labels.txt"})]
    paths += [str(p.relative_to(REPO)) for p in sorted((REPO / "profiles").glob("*.toml"))]
    for folder in ("data/imagenet-sample", "data/coco-10", "data/segmentation"):
        paths += [str(p.relative_to(REPO)) for p in sorted((REPO / folder).rglob("*")) if p.is_file()]
    return paths


def test_sdist_and_wheel_carry_the_shipped_files(installed):
    with tarfile.open(installed["sdist"]) as tar:
        in_sdist = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    with zipfile.ZipFile(installed["wheel"]) as zf:
        in_wheel = set(zf.namelist())
    expected = _shipped_files()
    assert len(expected) > 300
    assert [p for p in expected if p not in in_sdist] == []
    assert [p for p in expected if f"mnetctl/_shipped/{p}" not in in_wheel] == []
    assert not [n for n in in_wheel if n.endswith(".onnx") or "__pycache__" in n]


def test_resources_resolve_into_the_installed_package(installed):
    code = ("import json, mnetctl; from mnetctl.resources import resource_dir; "
            f"print(json.dumps([mnetctl.__file__] + [str(resource_dir(k)) for k in {list(SHIPPED)!r}]))")
    module, *dirs = json.loads(_run(installed["py"], "-c", code, cwd=installed["work"], env=installed["env"]).stdout)
    assert Path(module).is_relative_to(installed["site"])
    shipped = installed["site"] / "mnetctl" / "_shipped"
    assert [Path(d) for d in dirs] == [shipped / rel for rel in SHIPPED.values()]


def test_profiles_list_names_the_shipped_profiles(installed):
    names = [p["name"] for p in json.loads(_mnetctl(installed, "profiles", "list", "--json").stdout)]
    assert sorted(names) == sorted(p.stem for p in (REPO / "profiles").glob("*.toml"))
    override = installed["work"] / "myprofiles"
    override.mkdir(exist_ok=True)
    shutil.copy2(REPO / "profiles" / "host.toml", override / "host.toml")
    names = [p["name"] for p in json.loads(_mnetctl(installed, "profiles", "list", "--json",
                                                    MNETCTL_PROFILES_DIR=str(override)).stdout)]
    assert names == ["host"]  # the override still wins over the shipped copy


def test_build_pretrained_then_eval_on_the_shipped_images(installed):
    work = installed["work"]
    _mnetctl(installed, "build", "v1", "--width", "0.25", "--resolution", "128", "--weights", "pretrained", "-o", "m.onnx")
    assert (work / "m.onnx").stat().st_size > 1_000_000
    doc = json.loads(_mnetctl(installed, "eval", "m.onnx", "--limit", "20", "--json").stdout)
    assert doc["n"] == 20 and doc["top1"] > 0.3
    assert Path(doc["data"]).is_relative_to(installed["site"] / "mnetctl" / "_shipped" / "data")
    _mnetctl(installed, "build", "v1", "--width", "0.25", "--resolution", "128", "-q")
    assert (work / "models" / "v1-0.25-128.onnx").is_file()  # the default output is under the current folder


def test_small_sweep_writes_only_under_the_current_folder(installed):
    work = installed["work"]
    _mnetctl(installed, "sweep", "--arch", "v1", "--widths", "0.25", "--resolutions", "128", "--precisions", "fp32",
             "--limit", "10", "--iterations", "5", "-o", "out", "--cache", "cache")
    doc = json.loads((work / "out" / "sweep.json").read_text())
    assert [(v["arch"], v["width"], v["resolution"], v["precision"]) for v in doc["variants"]] == [("v1", 0.25, 128, "fp32")]
    assert doc["variants"][0]["n_images"] == 10
    assert (work / "out" / "report.md").is_file() and any((work / "cache").rglob("*.onnx"))


def test_nothing_was_written_into_site_packages(installed):
    # Runs last in this module: after every command above.
    assert _listing(installed["site"]) == installed["before"]
