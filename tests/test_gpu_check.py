"""The GPU check's plumbing on a CPU: the carried folder it prepares, sections that record what
failed or was cut and go on, and the kernel table of the profile."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import time

import pytest

from tests.conftest import ROOT
from utils.bench.measure import TOP_KERNELS, _top_rows, inductor_kernel_bytes, kernel_table
from utils.errors import UserError

_spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts/gpu_check.py")
gpu_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_check)


def test_prepare_takes_the_datasets_folder_and_the_official_source_from_a_bare_repository(tmp_path, text_ckpt):
    datasets = tmp_path / "datasets"
    for name in ("BSD400", "Kodak24"):
        (datasets / name).mkdir(parents=True)
        (datasets / name / "1.png").write_bytes(b"png")
    work = tmp_path / "official_work"
    (work / "net").mkdir(parents=True)
    (work / "net/model.py").write_text("class TextPromptIR: pass\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git + ["init", "-q", str(work)], check=True)
    subprocess.run(git + ["-C", str(work), "add", "."], check=True)
    subprocess.run(git + ["-C", str(work), "commit", "-qm", "x"], check=True)
    bare = tmp_path / "mirror.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    encoder = tmp_path / "encoder"
    shutil.copytree(text_ckpt, encoder)
    data = tmp_path / "gpu_data"
    gpu_check.prepare(datasets, bare, encoder, data)
    assert (data / "Train/Denoise/1.png").is_file() and (data / "test/denoise/Kodak24/1.png").is_file()
    assert (data / "text_encoder/embeddings.pt").is_file()
    assert (data / "official/net/model.py").read_text() == "class TextPromptIR: pass\n"
    with pytest.raises(UserError, match="Kodak24: not found; pass the folder holding BSD400/ and Kodak24/"):
        shutil.rmtree(datasets / "Kodak24")
        gpu_check.prepare(datasets, None, encoder, data)


def test_a_failed_or_late_measurement_is_recorded_and_the_section_goes_on(tmp_path):
    sec = gpu_check.Section(tmp_path, "b", limit=100)
    assert sec.item("ok", lambda: {"images_per_s": 1.5}) == {"images_per_s": 1.5, "elapsed_s": 0.0}

    def broken():
        raise RuntimeError("CUDA out of memory\nmore")
    assert sec.item("broken", broken) is None
    assert sec.item("late", lambda: {"x": 1}, need_s=1000) is None
    items = json.loads((tmp_path / "b_training.json").read_text())["items"]  # written after every item
    assert items["ok"]["images_per_s"] == 1.5
    assert items["broken"]["error"] == "RuntimeError: CUDA out of memory"
    assert items["late"]["skipped"].endswith("needs about 1000 s")

    def broken_at_the_limit():
        sec.deadline = time.monotonic() - 1
        raise RuntimeError("compile failed")
    with pytest.raises(gpu_check.OutOfTime):  # an error past the limit (e.g. the alarm wrapped by torch) ends it
        sec.item("at the limit", broken_at_the_limit)


def test_the_profile_table_ranks_kernels_by_time_with_bytes_where_inductor_estimated_them(tmp_path):
    (tmp_path / "ab").mkdir()
    (tmp_path / "ab/cxyz.py").write_text(  # the shape of a Triton kernel inductor wrote with its estimate
        "@triton_heuristics.pointwise(size_hints={'x': 1024}, filename=__file__, triton_meta={'signature': {}}, "
        "inductor_meta={'grid_type': 'Grid1D', 'kernel_name': 'triton_poi_fused_add_0', 'mutated_arg_names': [], "
        "'kernel_num_gb': 0.0025, 'kernel_flop': 0})\n@triton.jit\ndef triton_poi_fused_add_0(in_ptr0, xnumel):\n")
    assert inductor_kernel_bytes(tmp_path) == {"triton_poi_fused_add_0": 2.5e6}
    times = {"triton_poi_fused_add_0": [50.0, 10], "void cudnn::conv<...>": [150.0, 5]}
    times.update({f"k{i}": [1.0, 1] for i in range(20)})
    rows = _top_rows(times, steps=5, kernel_bytes=inductor_kernel_bytes(tmp_path))
    assert len(rows) == TOP_KERNELS and rows[0]["name"] == "void cudnn::conv<...>"
    add = rows[1]
    assert add["share"] == pytest.approx(50 / 220) and add["calls_per_step"] == 2 and add["ms_per_step"] == 0.01
    assert add["gb_per_s"] == pytest.approx(2.5e6 / 5e-6 / 1e9)  # 2.5 MB in 5 µs a call
    table = kernel_table(rows, "kernel").splitlines()
    assert table[2].startswith("| 1 | `void cudnn::conv<...>` | 68.2% | 0.030 | 1 |  |  |")
    assert table[3] == "| 2 | `triton_poi_fused_add_0` | 22.7% | 0.010 | 2 | 2.5 | 500 |"


def test_a_section_records_its_status_and_a_crash_does_not_stop_the_check(tmp_path):
    ok = gpu_check.run_section(gpu_check.Section(tmp_path, "a", limit=100), lambda sec: None, alarm=True)
    assert ok.data["status"] == "ok"

    def crashes(sec):
        sec.item("fine", lambda: {"x": 1})
        raise ValueError("bad shape")
    crashed = gpu_check.run_section(gpu_check.Section(tmp_path, "b", limit=100), crashes, alarm=False)
    assert crashed.data["status"] == "failed: ValueError: bad shape"
    assert json.loads((tmp_path / "b_training.json").read_text())["status"] == crashed.data["status"]
    failed_item = gpu_check.run_section(gpu_check.Section(tmp_path, "c", limit=100),
                                        lambda sec: sec.item("x", lambda: 1 / 0), alarm=True)
    assert failed_item.data["status"] == "failed"
    assert {"cpu", "torch", "compile_cache"} <= set(gpu_check.machine("cpu"))


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_the_real_runs_options_pass_train_pys_checks(tmp_path, monkeypatch, device):
    """Section d's train.py options parse and pass the path checks made before any work, wherever the
    check runs from (a preset's relative --val_root included)."""
    from options import check_train_paths, train_options

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "cache"))
    work = tmp_path / "work"
    (work / "demo/test").mkdir(parents=True)  # made by utils.data.demo_data before d runs train.py
    args = train_options(gpu_check.real_run_train_args(work, device))
    check_train_paths(args)
    assert args.val_every == 0 and args.compile == (device == "cpu") and args.max_steps == (300 if device == "cuda" else 3)
