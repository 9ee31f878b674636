"""Peak memory of `mnetctl eval` on decompression/resize "bombs": tiny files that describe huge images.

Makes two PNGs in a scratch folder, each alone in a class folder:
  * tall: 1 x 30000 pixels (~170 bytes), whose short-side resize would be millions of pixels long;
  * huge: 20000 x 20000 pixels (~1.2 MB), 400 MP once decoded;
then runs `python -m mnetctl eval MODEL --data FOLDER --json` on each in a child process and prints
its exit status, its peak RSS (from wait4) and what it said about the image.

    python scripts/image_bombs.py [--model v2.onnx] [--keep DIR]

Without --model it builds a MobileNet V2 1.0 224 with random weights (the numbers do not depend on them).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def write_png(path: Path, width: int, height: int) -> Path:
    """A black 8-bit RGB PNG of any size, compressed row by row (never held in memory whole)."""
    comp = zlib.compressobj(9)
    row = bytes(1 + 3 * width)  # filter byte 0 + black pixels
    parts = [comp.compress(row) for _ in range(height)]
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts))
                     + _chunk(b"IEND", b""))
    return path


def measure(argv: list[str], timeout: float = 600.0) -> dict:
    """Run a child process; its exit status, peak RSS (MiB), seconds and stderr."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        out.seek(0)
        return {"rc": proc.returncode, "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
                "seconds": round(time.perf_counter() - start, 1), "stderr": err.read().decode(errors="replace"),
                "stdout": out.read().decode(errors="replace")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="an ONNX classifier (default: build MobileNet V2 1.0 224, random weights)")
    ap.add_argument("--keep", help="make the images in this folder and keep them")
    args = ap.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mnetctl-bombs-"))
    root.mkdir(parents=True, exist_ok=True)
    model = args.model
    if model is None:
        model = str(root / "v2_1.0_224.onnx")
        subprocess.run([sys.executable, "-m", "mnetctl", "build", "v2", "-w", "1.0", "-r", "224", "-o", model],
                       check=True, capture_output=True)
    cases = {"tall 1x30000": (1, 30000), "huge 20000x20000": (20000, 20000)}
    rows = []
    baseline = measure([sys.executable, "-c", "import mnetctl.cli, cv2, onnxruntime"])
    for name, (w, h) in cases.items():
        folder = root / name.split()[0] / "n01440764"
        folder.mkdir(parents=True, exist_ok=True)
        png = write_png(folder / "bomb.png", w, h)
        res = measure([sys.executable, "-m", "mnetctl", "eval", model, "--data", str(folder.parent), "--json"])
        said = [ln for ln in res["stderr"].splitlines() if ln.strip()][-1:] or [""]
        try:
            failed = len(json.loads(res["stdout"])["failed"])
        except (ValueError, KeyError, TypeError):
            failed = None
        rows.append({"image": name, "file_bytes": png.stat().st_size, **{k: res[k] for k in ("rc", "peak_rss_mib", "seconds")},
                     "failed": failed, "last_stderr_line": said[0][:160]})
    print(f"imports alone: peak RSS {baseline['peak_rss_mib']} MiB")
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
