"""Build hook: copy the repository's shipped files into the package, so a wheel carries them.

The folders stay at the top of the repository; a (non-editable) build copies each into
`mnetctl/_shipped/<same path>`, where `mnetctl.resources` looks first. An editable install skips
the copy and reads the source tree. All other metadata lives in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# Mirrors the folders of mnetctl/resources.py KINDS (only the shipped part of models/ and data/).
SHIPPED = ("models/pretrained", "profiles", "data/imagenet-sample", "data/coco-10", "data/segmentation")
_SKIP = shutil.ignore_patterns(".*", "__pycache__", "*.pyc")


class BuildWithShippedFiles(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for rel in SHIPPED:
            src = ROOT / rel
            if not src.is_dir():
                raise SystemExit(f"setup.py: {rel}/ is missing; it must ship inside the wheel")
            dest = Path(self.build_lib) / "mnetctl" / "_shipped" / rel
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(src, dest, ignore=_SKIP)


setup(cmdclass={"build_py": BuildWithShippedFiles})
