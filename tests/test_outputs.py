"""Outputs: special files and links written through, inputs never overwritten, output sets all-or-nothing,
leftovers of killed runs removed, OS errors named by file and flag."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mnetctl import fsutil
from mnetctl.cli import main
from tests.test_bad_inputs import V1_025, Case, _snapshot, check_clean_error

REPO = Path(__file__).resolve().parents[1]
posix = pytest.mark.skipif(os.name != "posix", reason="POSIX file types")
root_only = pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="needs root (mknod, mount)")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    from mnetctl.builder import build_model, save_model

    root = tmp_path_factory.mktemp("outs")
    p = {"root": root, "model": save_model(build_model("v1", 0.25, 64), root / "m.onnx")}
    p["toml"] = root / "my.toml"
    p["toml"].write_text('name = "x"\ndescription = "d"\n[[eps]]\nname = "cpu"\n')
    assert main(["bench", str(p["model"]), "-n", "2", "-q", "--json", str(root / "b.json")]) == 0
    p["baseline"] = root / "b.json"
    p["cal"] = root / "cal"
    p["cal"].mkdir()
    tench = REPO / "data" / "imagenet-sample" / "val" / "n01440764" / "n01440764_tench.JPEG"
    (p["cal"] / "x.JPEG").write_bytes(tench.read_bytes())
    return p


def _refused(argv: list[str], needles: tuple[str, ...], watch: Path, capsys) -> None:
    """Exit 2, one clean error line naming what it should, nothing under `watch` changed."""
    before = _snapshot(watch)
    sums = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in watch.rglob("*") if p.is_file()}
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    check_clean_error(err, Case("x", "", needles))
    assert _snapshot(watch) == before
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in watch.rglob("*") if p.is_file()} == sums


# ------------------------------------------------------------------------------ D2: inputs are never outputs


def test_bench_report_onto_its_profile_or_baseline_is_refused(files, capsys):
    m, root = str(files["model"]), files["root"]
    for flag in ("--json", "--markdown", "--junit"):
        _refused(["bench", m, "-n", "2", "--profile", str(files["toml"]), flag, str(files["toml"])],
                 (flag, "my.toml", "overwrite the input"), root, capsys)
    _refused(["bench", m, "-n", "2", "--baseline", str(files["baseline"]), "--junit", str(files["baseline"])],
             ("--junit", "b.json", "overwrite the input"), root, capsys)
    _refused(["bench", m, "-n", "2", "--json", str(root / "r.x"), "--markdown", str(root / "r.x")],
             ("--json", "--markdown", "same file"), root, capsys)


def test_quantize_and_simplify_never_write_into_their_image_folders(files, capsys):
    m, cal = str(files["model"]), files["cal"]
    _refused(["quantize", m, "--calib", str(cal), "--no-eval", "-o", str(cal / "x.JPEG")],
             ("x.JPEG", "input folder"), files["root"], capsys)
    _refused(["quantize", m, "--calib", str(cal), "--no-eval", "-o", str(cal / "new.onnx")],
             ("new.onnx", "input folder"), files["root"], capsys)
    _refused(["simplify", m, "--check-images", str(cal), "-o", str(cal / "x.JPEG")],
             ("x.JPEG", "input folder"), files["root"], capsys)


def test_build_never_overwrites_a_shipped_checkpoint(tmp_path, capsys, monkeypatch):
    shipped = tmp_path / "pretrained" / "coral" / V1_025.name  # a copy: the real one must survive a regression
    shipped.parent.mkdir(parents=True)
    shipped.write_bytes(V1_025.read_bytes())
    monkeypatch.setenv("MNETCTL_PRETRAINED_DIR", str(tmp_path / "pretrained"))
    _refused(["build", "v1", "-w", "0.25", "-r", "128", "--weights", "pretrained", "-o", str(shipped)],
             ("mobilenet_v1_0.25_128_quant.tflite", "input folder"), tmp_path, capsys)


# ------------------------------------------------------------------------------ U9, U10, U2: odd output names


def test_empty_and_trailing_slash_outputs_are_refused(files, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _refused(["build", "v1", "-w", "0.25", "-r", "64", "-o", ""], ("-o is empty",), tmp_path, capsys)
    _refused(["build", "v1", "-w", "0.25", "-r", "64", "--output="], ("--output is empty",), tmp_path, capsys)
    _refused(["build", "v1", "-w", "0.25", "-r", "64", "-o", "newdir/"], ("-o newdir/", "folder"), tmp_path, capsys)
    _refused(["bench", str(files["model"]), "-n", "2", "--json", "rep/"], ("--json rep/", "folder"), tmp_path, capsys)
    assert not (tmp_path / "newdir").exists()


def test_a_250_byte_output_name_works(tmp_path):
    out = tmp_path / ("b" * 245 + ".onnx")
    assert main(["build", "v1", "-w", "0.25", "-r", "64", "-q", "-o", str(out)]) == 0
    assert out.stat().st_size > 0 and [p.name for p in tmp_path.iterdir()] == [out.name]


# ------------------------------------------------------------------------------ D1: special files and links


@posix
def test_a_symlink_is_written_through(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    (tmp_path / "link.json").symlink_to("real.json")
    fsutil.write_text(tmp_path / "link.json", "new")
    assert (tmp_path / "link.json").is_symlink() and real.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real.json"]


@posix
def test_a_fifo_is_written_into_not_replaced(tmp_path):
    fifo = tmp_path / "f.json"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    fsutil.write_text(fifo, "hello")
    reader.join(10)
    assert got == [b"hello"] and stat.S_ISFIFO(os.lstat(fifo).st_mode)


@root_only
def test_a_device_node_is_written_into_not_replaced(files, tmp_path):
    null = tmp_path / "null"
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    assert main(["build", "v1", "-w", "0.25", "-r", "64", "-q", "-o", str(null)]) == 0
    assert main(["bench", str(files["model"]), "-n", "2", "-q", "--json", str(null)]) == 0
    assert stat.S_ISCHR(os.lstat(null).st_mode) and [p.name for p in tmp_path.iterdir()] == ["null"]


@posix
def test_a_link_to_stdout_streams_the_report(files, tmp_path):
    """Like --json /dev/stdout, through a private link: a regression must not replace the system's /dev/stdout."""
    link = tmp_path / "stdout.json"
    link.symlink_to("/proc/self/fd/1")
    res = subprocess.run([sys.executable, "-m", "mnetctl", "bench", str(files["model"]), "-n", "2", "-q",
                          "--json", str(link)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert '"latency_ms"' in res.stdout and "PASS" in res.stdout
    assert link.is_symlink() and [p.name for p in tmp_path.iterdir()] == ["stdout.json"]


# ------------------------------------------------------------------------------ D9: output sets


def test_a_report_set_is_all_or_nothing(tmp_path, monkeypatch):
    (tmp_path / "a.json").write_text("old a")
    real = Path.write_bytes

    def fail_on_b(self, data):
        if ".b.xml." in self.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", fail_on_b)
    with pytest.raises(fsutil.OutputError, match=r"b\.xml: No space left"):
        fsutil.write_texts({tmp_path / "a.json": "new a", tmp_path / "b.xml": "new b"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"] and (tmp_path / "a.json").read_text() == "old a"


def _sweep_result():
    from mnetctl.sweep import SweepResult
    from tests.test_sweep_logic import _result

    return SweepResult(variants=[_result(0.25, 0.5, 0.3, 0.5)], skipped=[], settings={}, host={}, seconds=1.0)


def test_sweep_outputs_are_one_set_with_sweep_json_last(tmp_path, monkeypatch):
    import mnetctl.sweep as sw

    for name in ("sweep.json", "pareto.png", "report.md"):
        (tmp_path / name).write_text("old")
    monkeypatch.setattr(sw, "_draw_pareto", lambda *a: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(fsutil.OutputError, match="pareto.png"):
        sw.write_outputs(_sweep_result(), tmp_path)
    assert all((tmp_path / n).read_text() == "old" for n in ("sweep.json", "pareto.png", "report.md"))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    monkeypatch.setattr(sw, "_draw_pareto", lambda results, path, metric: Path(path).write_bytes(b"png"))
    renamed = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (renamed.append(Path(b).name), real_replace(a, b)))
    sw.write_outputs(_sweep_result(), tmp_path)
    assert renamed == ["pareto.png", "report.md", "sweep.json"]


@posix
def test_two_writers_of_one_sweep_folder_take_turns(tmp_path):
    lock = tmp_path / ".sweep.lock"
    done = threading.Event()
    with fsutil.locked(lock):
        t = threading.Thread(target=lambda: (fsutil.locked(lock).__enter__(), done.set()))
        t.start()
        time.sleep(0.3)
        assert not done.is_set()  # the second writer waits
    t.join(10)
    assert done.is_set()


# ------------------------------------------------------------------------------ D10, D11: leftovers, fsync


@posix
def test_stale_leftovers_are_removed_and_live_ones_kept(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    old = time.time() - 2 * fsutil.STALE_AFTER_S
    stale_dir, live_dir, fresh_dir = (tmp_path / "tmp" / f"mnetctl-quant-{n}" for n in ("a", "b", "c"))
    stale_tmp, other = tmp_path / ".r.json.0123abcd.tmp", tmp_path / ".r.json.keep.tmp"
    for d in (stale_dir, live_dir, fresh_dir):
        d.mkdir()
    for f in (stale_tmp, other):
        f.write_text("x")
    for p in (stale_dir, live_dir, stale_tmp, other):
        os.utime(p, (old, old))
    fd = os.open(live_dir, os.O_RDONLY)
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)  # a run still using it
        with fsutil.temp_dir("mnetctl-quant-"):
            pass
        fsutil.write_text(tmp_path / "r.json", "{}")
    finally:
        os.close(fd)
    assert not stale_dir.exists() and live_dir.exists() and fresh_dir.exists()
    assert not stale_tmp.exists() and other.exists()  # only mnetctl's own temp names are touched


def test_the_temp_file_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b)))
    with fsutil.atomic_path(tmp_path / "x.bin") as tmp:
        tmp.write_bytes(b"data")
    assert events[:2] == ["fsync", "replace"]


# ------------------------------------------------------------------------------ U1: OS errors named


@contextlib.contextmanager
def _full_disk(folder: Path):
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (folder / "fill").write_bytes(b"\0" * 63 * 1024)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


@root_only
def test_a_full_disk_names_the_file_and_flag(files, tmp_path, capsys):
    with _full_disk(tmp_path / "full") as full:
        code = main(["build", "v1", "-w", "0.25", "-r", "64", "-o", str(full / "b.onnx")])
        err = capsys.readouterr().err
        assert code == 2
        check_clean_error(err, Case("x", "", ("b.onnx (-o)", "No space left on device")))
        keep = tmp_path / "ok.json"
        code = main(["bench", str(files["model"]), "-n", "2", "-q", "--json", str(keep), "--junit", str(full / "r.xml")])
        err = capsys.readouterr().err
        assert code == 2 and "r.xml (--junit): No space left on device" in err, err
        assert not keep.exists()  # the set was not written: no passing JSON beside a missing JUnit file
        assert sorted(p.name for p in full.iterdir()) == ["fill"]


def test_a_too_long_input_name_names_the_flag(files, capsys):
    code = main(["eval", str(files["model"]), "--data", "d" * 300])
    err = capsys.readouterr().err
    assert code == 2
    check_clean_error(err, Case("x", "", ("--data", "File name too long")))


@posix
def test_stdout_on_a_full_device_is_one_line(files):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    with open("/dev/full", "w") as full:
        res = subprocess.run([sys.executable, "-m", "mnetctl", "inspect", str(files["model"]), "--json"],
                             stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error: cannot write to stdout: No space left on device")
    assert len(res.stderr.strip().splitlines()) == 1
