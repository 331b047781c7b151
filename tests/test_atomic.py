"""Files are written whole or not at all, and never over another run's: results, options.yaml,
saved images, the text encoder folder (a full disk, simulated by a file-size limit, or an error
mid-write); two test.py runs under one --name keep both runs' rows; two demo.py runs into one
--output do not overwrite each other; the run lock still keeps a second run out."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import demo
from tests.conftest import ROOT, smooth_image, tiny_bank
from utils.atomic import FileTaken, new_folder, write_bytes, write_file
from utils.errors import UserError
from utils.eval.results import Results

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()  # an empty file's
CHECKPOINT = {"path": "ckpt/x.pt", "sha256": EMPTY_SHA256, "weights_sha256": EMPTY_SHA256}


def run_on_full_disk(setup: str, action: str, limit: int) -> subprocess.CompletedProcess:
    """Run ``setup`` then ``action`` in a fresh Python whose files cannot grow past ``limit`` bytes
    (RLIMIT_FSIZE: a write past it fails, as on a full disk), from the project root."""
    script = "\n".join([textwrap.dedent(setup), "import resource, signal",
                        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)",
                        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY))",
                        textwrap.dedent(action)])
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp"))


# --- the helper -------------------------------------------------------------------------------------


def test_a_file_is_linked_into_place_without_replacing_one_there(tmp_path):
    path = tmp_path / "a" / "f.txt"
    write_bytes(path, b"first", replace=False)
    with pytest.raises(FileTaken, match="f.txt: already exists"):
        write_bytes(path, b"second", replace=False)
    assert path.read_bytes() == b"first"
    write_bytes(path, b"third", replace=True)
    assert path.read_bytes() == b"third" and leftovers(tmp_path) == []


def test_an_error_while_writing_leaves_the_old_file_and_no_temporary_one(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")

    def half_then_full(f):
        f.write(b"half of it")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_file(path, half_then_full, replace=True)
    assert path.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_a_folder_is_renamed_into_place_whole(tmp_path):
    out = tmp_path / "enc"
    with new_folder(out, replace=False) as tmp:
        (tmp / "a").write_text("1")
    assert (out / "a").read_text() == "1"
    with pytest.raises(RuntimeError), new_folder(out, replace=True) as tmp:
        (tmp / "a").write_text("2")
        raise RuntimeError("stopped half way")
    assert (out / "a").read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == ["enc"]
    with pytest.raises(FileTaken), new_folder(out, replace=False) as tmp:
        (tmp / "b").write_text("2")
    with new_folder(out, replace=True) as tmp:
        (tmp / "b").write_text("2")
    assert [p.name for p in out.iterdir()] == ["b"] and sorted(p.name for p in tmp_path.iterdir()) == ["enc"]


# --- results of test.py ----------------------------------------------------------------------------

SUMMARY = dict(task="derain", sigma=None, n=1, psnr=30.0, ssim=0.9, input_psnr=20.0, input_ssim=0.5)
PROTOCOL_ARGS = dict(route="instruction", instruction=None, precision="fp32", y_channel=False, crop16=True)


def row(label: str, images: int = 1) -> tuple[dict, list[dict]]:
    summary = dict(SUMMARY, label=label, name=label)
    return summary, [dict(name=f"{i}.png", path=f"{i}.png", psnr=30.0, ssim=0.9, input_psnr=20.0, input_ssim=0.5)
                     for i in range(images)]


def results(out: Path, sets: list[dict] | None = None) -> Results:
    r = Results(out, CHECKPOINT, list(sets or []))
    r._versions = {"torch": "t"}  # what versions() would look up, without importing torch here
    return r


def test_two_runs_under_one_name_at_once_keep_both_runs_rows(tmp_path):
    from utils.eval.results import Protocol

    protocol = Protocol(**PROTOCOL_ARGS)
    first, second = results(tmp_path), results(tmp_path)  # both opened before either wrote
    first.put(*row("SetA"), protocol, "test")
    second.put(*row("SetB"), protocol, "test")
    first.write()
    second.write()
    first.put(*row("SetC"), protocol, "test")
    first.write()
    stored = json.loads((tmp_path / "results.json").read_text())
    assert [s["label"] for s in stored["sets"]] == ["SetA", "SetB", "SetC"]
    assert "SetB" in (tmp_path / "results.md").read_text() and "SetB" in (tmp_path / "results.csv").read_text()


def test_a_set_another_run_scored_meanwhile_is_not_replaced_without_overwrite(tmp_path):
    from utils.eval.results import Protocol

    protocol = Protocol(**PROTOCOL_ARGS)
    first, second = results(tmp_path), results(tmp_path)
    first.put(*row("SetA"), protocol, "test")
    first.write()
    second.put(*row("SetA"), protocol, "test")
    with pytest.raises(UserError, match="SetA was scored the same way by another run"):
        second.write()


CHILD = """
import sys, time
from pathlib import Path
from utils.eval.results import Protocol, Results
out, who, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
protocol = Protocol(route="instruction", instruction=None, precision="fp32", y_channel=False, crop16=True)
r = Results(out, {"path": "ckpt/x.pt", "sha256": sys.argv[4], "weights_sha256": sys.argv[4]}, [])
r._versions = {}
while not go.exists():
    time.sleep(0.01)
for i in range(25):
    r.put(dict(label=f"{who}{i}", name=f"{who}{i}", task="derain", sigma=None, n=1, psnr=30.0, ssim=0.9,
               input_psnr=20.0, input_ssim=0.5), [], protocol, "test")
    r.write()
"""


def test_two_processes_writing_results_under_one_name_keep_every_row(tmp_path):
    go = tmp_path / "go"
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), who, str(go), CHECKPOINT["sha256"]], cwd=ROOT,
                                 stderr=subprocess.PIPE, text=True) for who in ("a", "b")]
    time.sleep(0.5)
    go.touch()
    errors = [c.communicate(timeout=120)[1] for c in children]
    assert [c.returncode for c in children] == [0, 0], errors
    labels = {s["label"] for s in json.loads((tmp_path / "results.json").read_text())["sets"]}
    assert labels == {f"{who}{i}" for who in "ab" for i in range(25)}


def test_a_full_disk_while_writing_results_keeps_the_earlier_ones_whole(tmp_path):
    from utils.eval.results import Protocol

    first = results(tmp_path)
    first.put(*row("SetA"), Protocol(**PROTOCOL_ARGS), "test")
    first.write()
    before = {name: (tmp_path / name).read_bytes() for name in ("results.json", "results.csv", "results.md")}
    done = run_on_full_disk(f"""
        import json
        from pathlib import Path
        from utils.eval.results import Protocol, Results
        out = Path({str(tmp_path)!r})
        r = Results(out, {CHECKPOINT!r}, json.loads((out / "results.json").read_text())["sets"])
        r._versions = {{}}
        for i in range(40):
            r.put(dict(label=f"more{{i}}", name=f"more{{i}}", task="derain", sigma=None, n=1, psnr=30.0, ssim=0.9,
                       input_psnr=20.0, input_ssim=0.5),
                  [dict(name=f"{{j}}.png", path=f"{{j}}.png", psnr=1.0, ssim=1.0, input_psnr=1.0, input_ssim=1.0)
                   for j in range(20)], Protocol(**{PROTOCOL_ARGS!r}), "test")
    """, "r.write()", limit=len(before["results.json"]) + 2000)
    assert done.returncode != 0 and "File too large" in done.stderr
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    assert leftovers(tmp_path) == []
    ckpt = tmp_path.parent / f"{tmp_path.name}.pt"
    ckpt.write_bytes(b"")  # the checkpoint the results are of: its SHA-256 is CHECKPOINT's
    assert [s["label"] for s in Results.open(tmp_path, ckpt, False, CHECKPOINT["weights_sha256"]).sets] == ["SetA"]


# --- options.yaml, images, the text encoder folder -------------------------------------------------


def test_a_full_disk_while_writing_options_yaml_leaves_the_previous_one_whole(tmp_path):
    run_dir, log_dir = tmp_path / "ckpt/run", tmp_path / "logs"
    run_dir.mkdir(parents=True)
    (run_dir / "options.yaml").write_text("lr: 0.0002\n")
    done = run_on_full_disk(f"""
        from argparse import Namespace
        from pathlib import Path
        from types import SimpleNamespace
        from utils.train.run import open_log
        args = Namespace(log_dir={str(log_dir)!r}, name="run", repeat=[], data_root="x" * 20000)
        run = SimpleNamespace(args=args, dist_info=SimpleNamespace(world_size=1), run_dir=Path({str(run_dir)!r}),
                              text_record=None)
    """, "open_log(run, 0)", limit=8000)
    assert done.returncode != 0 and "File too large" in done.stderr
    assert (run_dir / "options.yaml").read_text() == "lr: 0.0002\n"
    assert not (log_dir / "run/options.yaml").exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("writer", ["write_image", "save_photo"])
def test_a_full_disk_while_saving_an_image_leaves_no_truncated_file(tmp_path, writer):
    png = tmp_path / "images/0.png"
    rgb = "np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)"
    done = run_on_full_disk(f"""
        import numpy as np
        from utils.data.image_io import save_photo, write_image
        rgb = {rgb}
    """, f"write_image({str(png)!r}, rgb)" if writer == "write_image" else  # 16 bits: Pillow removes its own
                            f"save_photo({str(png)!r}, rgb / 255.0, bit_depth=16)", limit=50_000)  # partial files
    assert done.returncode != 0 and "File too large" in done.stderr
    assert not png.exists() and leftovers(tmp_path) == []


def test_a_failure_while_saving_the_text_encoder_leaves_the_previous_one_whole(tmp_path, monkeypatch, text_ckpt):
    import net.text_encoder
    from net.text_encoder import InstructionEncoder
    from utils.text.finetune import finetune_text_encoder

    bank, out = tiny_bank(tmp_path / "bank"), tmp_path / "text_encoder"
    shutil.copytree(text_ckpt, out)  # an encoder the text stage saved before, with no checkpoint using it
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    fingerprint = InstructionEncoder.load(out).fingerprint()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(net.text_encoder, "save_file", full_disk)  # the head, written after the BERT weights
    with pytest.raises(OSError, match="No space"):
        finetune_text_encoder(None, out, epochs=1, batch_size=3, bank_root=bank, log=lambda _: None,
                              max_steps=1)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert InstructionEncoder.load(out).fingerprint() == fingerprint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank", "text_encoder"]


# --- demo.py ---------------------------------------------------------------------------------------


def test_two_demo_runs_into_one_output_at_once_do_not_overwrite_each_other(tmp_path, tiny_ckpt, capsys,
                                                                          monkeypatch):
    """Run B starts and ends while run A restores the same photo; both checked --output before either
    wrote. B's result stays, and A says its image failed instead of "1 succeeded"."""
    from PIL import Image

    import utils.data.image_io as image_io

    src = tmp_path / "in" / "photo.png"
    src.parent.mkdir()
    Image.fromarray(smooth_image(np.random.default_rng(0), 24, 24)).save(src)
    out = tmp_path / "out"
    args = ["--no_progress", "--ckpt", str(tiny_ckpt), "--input", str(src), "--output", str(out), "--task", "denoise"]
    save, codes = image_io.save_photo, []

    def other_run_first(*a, **k):
        monkeypatch.setattr(image_io, "save_photo", save)
        codes.append(demo.main(args))  # run B, in full
        save(*a, **k)  # then run A's own save

    monkeypatch.setattr(image_io, "save_photo", other_run_first)
    codes.insert(0, demo.main(args))  # run A
    printed = capsys.readouterr()
    assert codes == [1, 0]
    assert printed.out.count("summary: 1 succeeded, 0 failed") == 1
    assert printed.out.count("summary: 0 succeeded, 1 failed") == 1
    assert f"{out / 'photo.png'}: already exists" in printed.err
    assert Image.open(out / "photo.png").size == (24, 24) and leftovers(tmp_path) == []


# --- the run lock ------------------------------------------------------------------------------------


def test_the_run_lock_still_keeps_a_second_process_out(tmp_path):
    from utils.train.run_lock import FolderLocked, RunLock

    with RunLock(tmp_path, hint="pass another --name"):
        done = subprocess.run([sys.executable, "-c", f"""
from utils.cli import cli_main
from utils.train.run_lock import RunLock
def main(argv):
    RunLock({str(tmp_path)!r}, hint="pass another --name").acquire()
    return 0
raise SystemExit(cli_main(main))
"""], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and "another run is using this folder" in done.stderr
        assert "pass another --name" in done.stderr
    with RunLock(tmp_path) as lock:  # free again once released
        assert lock.fd is not None
    with pytest.raises(FolderLocked), RunLock(tmp_path), RunLock(tmp_path):
        pass
