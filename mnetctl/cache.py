"""A content-addressed artifact cache: entries keyed by a digest of everything that determines them.

Keys hash content (file bytes, image bytes, profile contents, settings), never names or paths. Every entry
records the digest of its artifact; an entry whose artifact is missing or no longer matches is quarantined
(moved aside) and rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from .fsutil import write_text


def digest(obj: Any) -> str:
    """A short stable digest of JSON-able data."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def file_digest(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:20]


def samples_digest(samples) -> str:
    """Identity of an image set: each image's bytes and label, in order (renaming a file does not change it)."""
    h = hashlib.sha256()
    for s in samples:
        h.update(file_digest(s.path).encode())
        h.update(f":{s.label};".encode())
    return h.hexdigest()[:20]


def default_cache_dir() -> Path:
    base = os.environ.get("MNETCTL_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "mnetctl")
    return Path(base) / "sweep"


# The artifact's file suffix per stage (default .onnx): the TFLite export writes a .tflite file.
ARTIFACT_SUFFIX = {"export_tflite": ".tflite"}


class Cache:
    """Stage entries under `root/<stage>/<key>.json`, with an optional model artifact `<key>.onnx` (or the stage's
    `ARTIFACT_SUFFIX`) beside it."""

    def __init__(self, root: Path, enabled: bool = True):
        self.root = Path(root)
        self.enabled = enabled

    def _entry(self, stage: str, key: str) -> Path:
        return self.root / stage / f"{key}.json"

    def artifact(self, stage: str, key: str) -> Path:
        return self.root / stage / f"{key}{ARTIFACT_SUFFIX.get(stage, '.onnx')}"

    def get(self, stage: str, key: str) -> dict | None:
        """The stored result, or None when absent, disabled, unreadable or its artifact does not verify."""
        entry = self._entry(stage, key)
        if not self.enabled or not entry.is_file():
            return None
        try:
            doc = json.loads(entry.read_text())
            result = doc["result"]
            expected = doc.get("artifact_sha")
        except (OSError, ValueError, KeyError, TypeError):
            self.quarantine(stage, key)
            return None
        if expected is not None:
            art = self.artifact(stage, key)
            if not art.is_file() or file_digest(art) != expected:
                self.quarantine(stage, key)
                return None
        return result

    def put(self, stage: str, key: str, result: dict, artifact: bool = False) -> None:
        """Record a result (after its artifact, if any, is fully written)."""
        doc: dict[str, Any] = {"result": result}
        if artifact:
            doc["artifact_sha"] = file_digest(self.artifact(stage, key))
        write_text(self._entry(stage, key), json.dumps(doc, indent=1, sort_keys=True))

    def quarantine(self, stage: str, key: str) -> None:
        """Move a bad entry and its artifact to `root/quarantine/` so the stage runs again."""
        bad = self.root / "quarantine" / stage
        bad.mkdir(parents=True, exist_ok=True)
        for path in (self._entry(stage, key), self.artifact(stage, key)):
            if path.exists():
                shutil.move(str(path), bad / path.name)
