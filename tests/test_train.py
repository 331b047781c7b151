"""train.py: exact resume, DDP on CPU, NaN stop, config mismatch, Ctrl-C-safe checkpoints."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

import train
from tests.conftest import ROOT, TINY_NET, tiny_bank


def base_args(layout: Path, text_ckpt: Path, tmp: Path, run: str) -> list[str]:
    return ["--data_root", str(layout / "Train"), "--text_ckpt", str(text_ckpt), *TINY_NET,
            "--patch_size", "32", "--batch_size", "2", "--num_workers", "0", "--epochs", "3",
            "--warmup_epochs", "1", "--lr", "1e-3", "--ckpt_dir", str(tmp / "ckpt"),
            "--log_dir", str(tmp / "logs"), "--name", run, "--device", "cpu", "--no_progress",
            "--repeat", "denoise_15=1", "denoise_25=1", "denoise_50=1", "derain=1", "dehaze=1"]


def weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)["model"]


def test_resume_is_exact(tiny_layout, text_ckpt, tmp_path):
    # 18 samples (4 clean images x 3 sigmas + 3 rain + 3 haze) / batch 2 = 9 steps per epoch
    assert train.main(base_args(tiny_layout, text_ckpt, tmp_path, "straight") + ["--max_steps", "4"]) == 0
    assert train.main(base_args(tiny_layout, text_ckpt, tmp_path, "split") + ["--max_steps", "2"]) == 0
    first = torch.load(tmp_path / "ckpt/split/last.pt", weights_only=True)
    assert first["step"] == 2 and first["batches_done_in_epoch"] == 2
    assert train.main(base_args(tiny_layout, text_ckpt, tmp_path, "split") + ["--max_steps", "4", "--resume"]) == 0
    a, b = weights(tmp_path / "ckpt/straight/last.pt"), weights(tmp_path / "ckpt/split/last.pt")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0, msg=k)
    # and training did change the weights
    assert any((a[k] - first["model"][k]).abs().max() > 0 for k in a)


def test_resume_across_epoch_boundary_and_checkpoint_contents(tiny_layout, text_ckpt, tmp_path):
    args = base_args(tiny_layout, text_ckpt, tmp_path, "epochs")
    assert train.main(args + ["--max_steps", "11"]) == 0  # one epoch (9 steps) and 2 more
    assert train.main(base_args(tiny_layout, text_ckpt, tmp_path, "epochs5") + ["--max_steps", "5"]) == 0
    assert train.main(base_args(tiny_layout, text_ckpt, tmp_path, "epochs5") + ["--max_steps", "11", "--resume"]) == 0
    a, b = weights(tmp_path / "ckpt/epochs/last.pt"), weights(tmp_path / "ckpt/epochs5/last.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0, msg=k)
    ck = torch.load(tmp_path / "ckpt/epochs/last.pt", weights_only=True)
    for key in ("format", "model", "config", "optimizer", "scheduler", "epoch", "step", "rng",
                "options", "text_encoder"):
        assert key in ck
    assert ck["epoch"] == 1 and ck["step"] == 11 and ck["batches_done_in_epoch"] == 2
    # the encoder is found from the checkpoint's own folder, whatever the working directory
    assert (tmp_path / "ckpt/epochs" / ck["text_encoder"]["dir"]).resolve() == text_ckpt.resolve()
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in ck["model"])
    assert (tmp_path / "logs/epochs/options.yaml").is_file()


def trained_for(args: list[str], steps: int, last: Path, capsys) -> bytes:
    """Train ``steps`` steps with ``args``, and the bytes of the checkpoint ``last`` it wrote."""
    assert train.main(args + ["--max_steps", str(steps)]) == 0
    capsys.readouterr()
    return last.read_bytes()


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tiny_layout, text_ckpt, tmp_path, capsys):
    args = base_args(tiny_layout, text_ckpt, tmp_path, "nan")
    last = tmp_path / "ckpt/nan/last.pt"
    good = trained_for(args, 1, last, capsys)
    # an absurd learning rate blows the weights up after the first step
    assert train.main(args + ["--lr", "1e30", "--warmup_epochs", "0", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "loss became nan" in err and f"{last} is still the one that was there before" in err
    assert len(err.strip().splitlines()) == 1
    assert last.read_bytes() == good


def one_batch_derain(root: Path) -> Path:
    """A derain-only training folder of exactly one batch of 2."""
    from tests.conftest import smooth_image, write

    rng = np.random.default_rng(0)
    for i in (1, 2):
        gt = smooth_image(rng, 40, 40)
        write(root / "Derain/gt" / f"norain-{i}.png", gt)
        write(root / "Derain/rainy" / f"rain-{i}.png", np.clip(gt.astype(int) + 40, 0, 255).astype(np.uint8))
    return root


def test_weights_broken_by_an_epochs_last_step_are_never_saved(tiny_layout, text_ckpt, tmp_path, capsys):
    """One step per epoch: the step that breaks the weights is the last before the epoch's save."""
    args = base_args(tiny_layout, text_ckpt, tmp_path, "boom")
    data = one_batch_derain(tmp_path / "data")
    args[args.index("--data_root") + 1] = str(data)
    args = args + ["--de_type", "derain", "--repeat", "derain=1", "--epochs", "3", "--save_every", "1",
                   "--val_every", "0", "--lr", "1e6", "--warmup_epochs", "0"]
    assert train.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "NaN/inf" in err and "stopped without saving" in err
    saved = sorted((tmp_path / "ckpt/boom").glob("*.pt"))
    from utils.checkpoint import load_model
    from utils.data.train_set import TrainDataset

    batch = TrainDataset(data, ["derain"], patch_size=32, repeats={"derain": 1})[0]
    for path in saved:  # whatever was written restores to finite images
        model, _ = load_model(path)
        with torch.no_grad():
            assert torch.isfinite(model(batch["lq"][None], torch.randn(1, 384))).all(), path
    if saved:
        assert f"the last good checkpoint is {tmp_path / 'ckpt/boom/last.pt'}" in err
    else:
        assert "this run has no checkpoint yet" in err


def test_resume_with_another_config_is_refused(tiny_layout, text_ckpt, tmp_path, capsys):
    args = base_args(tiny_layout, text_ckpt, tmp_path, "cfg")
    assert train.main(args + ["--max_steps", "1"]) == 0
    capsys.readouterr()
    assert train.main(args + ["--resume", "--dim", "16"]) == 2
    err = capsys.readouterr().err.strip()
    assert "another network config" in err and "dim" in err
    assert len(err.splitlines()) == 1


def test_missing_text_encoder_is_a_clear_error(tiny_layout, tmp_path):
    args = base_args(tiny_layout, tmp_path / "nowhere", tmp_path, "notext") + ["--max_steps", "1"]
    r = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "--stage text" in r.stderr and str(tmp_path / "nowhere") in r.stderr


def test_plain_restormer_trains_without_text(tiny_layout, tmp_path):
    args = base_args(tiny_layout, tmp_path / "unused", tmp_path, "plain") + ["--text_cond", "none", "--max_steps", "2"]
    assert train.main(args) == 0
    ck = torch.load(tmp_path / "ckpt/plain/last.pt", weights_only=True)
    assert ck["config"]["text_cond"] == "none"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_cpu_ddp(tiny_layout, text_ckpt, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    args = base_args(tiny_layout, text_ckpt, tmp_path, "ddp") + ["--max_steps", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([str(torchrun), "--nproc_per_node=2", f"--master_port={free_port()}", "train.py", *args],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "on 2 x cpu" in r.stdout
    assert "global batch 4 (--batch_size 2 per process x 2)" in r.stdout
    ck = torch.load(tmp_path / "ckpt/ddp/last.pt", weights_only=True)
    assert ck["step"] == 3
    assert ck["options"]["batch_size"] == 2


def test_a_new_run_never_replaces_an_existing_runs_checkpoint(tiny_layout, text_ckpt, tmp_path, capsys):
    args = base_args(tiny_layout, text_ckpt, tmp_path, "mine")
    assert train.main(args + ["--max_steps", "2"]) == 0
    last = tmp_path / "ckpt/mine/last.pt"
    before, options = last.read_bytes(), (tmp_path / "ckpt/mine/options.yaml").read_bytes()
    capsys.readouterr()
    assert train.main(args + ["--max_steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [
        f"error: {last}: a run named 'mine' already has a checkpoint (epoch 0, step 2); continue it with "
        "--resume, start another with --name NEW, or replace it with --overwrite"]
    assert last.read_bytes() == before and (tmp_path / "ckpt/mine/options.yaml").read_bytes() == options
    assert train.main(args + ["--max_steps", "1", "--overwrite"]) == 0
    assert torch.load(last, weights_only=True)["step"] == 1


def test_resuming_at_max_steps_runs_no_step_and_changed_batch_size_warns(tiny_layout, text_ckpt, tmp_path, capsys):
    args = base_args(tiny_layout, text_ckpt, tmp_path, "limit")
    last = tmp_path / "ckpt/limit/last.pt"
    before = trained_for(args, 3, last, capsys)
    assert train.main(args + ["--max_steps", "3", "--resume"]) == 0
    assert "already at --max_steps 3: nothing to do" in capsys.readouterr().out
    assert last.read_bytes() == before
    bigger = [v if v != "2" or args[i - 1] != "--batch_size" else "3" for i, v in enumerate(args)]
    assert train.main(bigger + ["--max_steps", "4", "--resume"]) == 0
    assert "--batch_size 3 differs from the checkpoint's 2" in capsys.readouterr().err
    assert torch.load(last, weights_only=True)["step"] == 4


def test_half_written_checkpoints_are_cleared_at_start(tiny_layout, text_ckpt, tmp_path):
    args = base_args(tiny_layout, text_ckpt, tmp_path, "tmp")
    assert train.main(args + ["--max_steps", "1"]) == 0
    orphan = tmp_path / "ckpt/tmp/last.pt.k1ll3d.tmp"  # what a kill during a save leaves
    orphan.write_bytes(b"half")
    assert train.main(args + ["--max_steps", "2", "--resume"]) == 0
    assert not orphan.exists()


def test_resume_messages_name_the_real_flags(tiny_layout, text_ckpt, tmp_path, capsys):
    args = base_args(tiny_layout, text_ckpt, tmp_path, "flags")
    assert train.main(args + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--ckpt" not in err
    assert train.main(args + ["--max_steps", "1"]) == 0
    capsys.readouterr()
    assert train.main(args + ["--resume", "--dim", "16"]) == 2
    err = capsys.readouterr().err
    assert "--name" in err and "--run" not in err


def test_bad_repeat_is_one_line(tiny_layout, text_ckpt, tmp_path, capsys):
    args = base_args(tiny_layout, text_ckpt, tmp_path, "rep")
    args = args[:args.index("--repeat")] + ["--repeat", "derain=abc"]
    assert train.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [
        "error: argument --repeat: 'derain=abc': expected TASK=N with N from 1 to 1000 and TASK in denoise_15, "
        "denoise_25, denoise_50, derain, dehaze, deblur, lowlight (see `train.py --help`)"]


def truncated_png(path: Path) -> None:
    """A PNG whose header (and so its size) reads fine but whose pixels cannot be decoded."""
    from tests.conftest import smooth_image, write

    write(path, smooth_image(np.random.default_rng(1), 40, 48))
    path.write_bytes(path.read_bytes()[:60])


def test_an_unreadable_image_met_by_a_worker_is_one_line_and_the_steps_done_are_saved(tiny_layout, text_ckpt,
                                                                                        tmp_path, capsys):
    import shutil

    from utils.data.sampler import EpochSampler
    from utils.data.train_set import TrainDataset

    data = tmp_path / "Train"
    shutil.copytree(tiny_layout / "Train", data)
    args = base_args(tiny_layout, text_ckpt, tmp_path, "worker")
    args[args.index("--data_root") + 1] = str(data)
    args[args.index("--num_workers") + 1] = "1"
    args += ["--cache_gb", "0"]  # decode in the worker
    assert train.main(args + ["--max_steps", "9"]) == 0  # epoch 1, all images fine
    # break an image first drawn in the 3rd batch of epoch 2 or later: the data checks at start-up
    # read only headers, so the worker meets it mid-epoch
    dataset = TrainDataset(data, repeats={k: 1 for k in ("denoise_15", "denoise_25", "denoise_50", "derain", "dehaze")},
                           seed=0, check_sizes=False)
    sampler = EpochSampler(len(dataset), seed=0)
    sampler.set_epoch(1)
    first_batch: dict[Path, int] = {}
    for position, (_, index) in enumerate(sampler):
        for path in dataset.pair(index):
            if path is not None:
                first_batch.setdefault(path, position // 2)
    broken = next(p for p, b in first_batch.items() if b >= 2 and p.suffix == ".png")
    truncated_png(broken)
    capsys.readouterr()
    assert train.main(args + ["--max_steps", "18", "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "DataLoader worker" not in err
    assert str(broken) in err and "continue with --resume" in err
    # the steps of epoch 2 before the broken batch are kept
    assert torch.load(tmp_path / "ckpt/worker/last.pt", weights_only=True)["step"] == 9 + first_batch[broken]


def test_ctrl_c_during_start_up_is_one_line(tiny_layout, text_ckpt, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "build_run", interrupted)
    assert train.main(base_args(tiny_layout, text_ckpt, tmp_path, "ctrl")) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["interrupted"]


def test_dev_preset_trains_on_a_folder_of_clean_images(text_ckpt, tmp_path):
    from tests.conftest import smooth_image, write

    rng = np.random.default_rng(0)
    for i in range(3):
        write(tmp_path / "photos" / f"{i}.jpg", smooth_image(rng, 48, 40))
    args = ["--preset", "dev", "--data_root", str(tmp_path / "photos"), "--text_ckpt", str(text_ckpt), *TINY_NET,
            "--patch_size", "32", "--batch_size", "2", "--num_workers", "0", "--epochs", "1", "--warmup_epochs", "0",
            "--max_steps", "2", "--val_every", "0", "--ckpt_dir", str(tmp_path / "ckpt"),
            "--log_dir", str(tmp_path / "logs"), "--device", "cpu", "--no_progress"]
    assert train.main(args) == 0
    ck = torch.load(tmp_path / "ckpt/dev/last.pt", weights_only=True)
    assert ck["step"] == 2 and ck["options"]["preset"] == "dev"
    # the recipe it saved says so, and repeats the run without --preset dev
    assert train.main(["--config", str(tmp_path / "ckpt/dev/options.yaml"), "--name", "again", "--max_steps", "2",
                       "--ckpt_dir", str(tmp_path / "ckpt"), "--log_dir", str(tmp_path / "logs"), "--no_progress"]) == 0
    again = weights(tmp_path / "ckpt/again/last.pt")
    assert all(torch.equal(again[k], v) for k, v in ck["model"].items())


# ------------------------------------------------------------------ nothing of the user's is replaced
def test_the_text_stage_never_replaces_a_model_folder_it_did_not_write(tmp_path, capsys):
    mybert = tmp_path / "mybert"
    mybert.mkdir()
    theirs = {"config.json": b'{"model_type": "bert"}', "model.safetensors": b"their weights",
              "tokenizer.json": b"{}", "vocab.txt": b"[PAD]\n"}
    for name, data in theirs.items():
        (mybert / name).write_bytes(data)
    args = ["--stage", "text", "--text_ckpt", str(mybert), "--bank_root", str(tiny_bank(tmp_path / "bank")),
            "--text_epochs", "1", "--text_batch_size", "3"]
    assert train.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(mybert) in err[0] and "--overwrite" in err[0] and "--text_ckpt" in err[0]
    assert {p.name: p.read_bytes() for p in mybert.iterdir()} == theirs
    assert train.main(args + ["--overwrite"]) == 0  # told to: replaced
    assert (mybert / "labels.json").is_file() and (mybert / "model.safetensors").read_bytes() != theirs["model.safetensors"]


def test_resuming_another_runs_checkpoint_never_replaces_this_runs_own(tiny_layout, text_ckpt, tmp_path, capsys):
    a_args, b_args = (base_args(tiny_layout, text_ckpt, tmp_path, run) for run in ("runA", "runB"))
    assert train.main(a_args + ["--max_steps", "2"]) == 0
    assert train.main(b_args + ["--max_steps", "1"]) == 0
    a_last, b_last = tmp_path / "ckpt/runA/last.pt", tmp_path / "ckpt/runB/last.pt"
    before = b_last.read_bytes()
    capsys.readouterr()
    assert train.main(b_args + ["--resume", str(a_last), "--max_steps", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(b_last) in err[0] and "--overwrite" in err[0]
    assert b_last.read_bytes() == before
    assert train.main(b_args + ["--resume", str(a_last), "--max_steps", "3", "--overwrite"]) == 0
    assert torch.load(b_last, weights_only=True)["step"] == 3
    # continuing a run in its own folder needs nothing more
    assert train.main(b_args + ["--resume", str(b_last), "--max_steps", "4"]) == 0
    assert train.main(b_args + ["--resume", "--max_steps", "5"]) == 0
    assert torch.load(b_last, weights_only=True)["step"] == 5


def start_training(args: list[str]) -> subprocess.Popen:
    """train.py in its own process, returned once it has set its run up (the summary line)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("TextPromptIR:"):
            return proc
    proc.wait()
    raise AssertionError("train.py ended before training:\n" + "".join(lines))


def test_a_second_run_of_the_same_name_is_refused_while_the_first_runs(tiny_layout, text_ckpt, tmp_path, capsys):
    args = base_args(tiny_layout, text_ckpt, tmp_path, "dup")
    args[args.index("--epochs") + 1] = "100000"
    first = start_training(args)
    try:
        capsys.readouterr()
        assert train.main(args + ["--max_steps", "1", "--overwrite"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"pid {first.pid}" in err[0] and socket.gethostname() in err[0]
        assert "started" in err[0] and "--name" in err[0]
    finally:
        first.kill()  # as a crash or `kill -9` would: nothing releases the lock but the OS
        first.wait()
    assert train.main(args + ["--max_steps", "1", "--overwrite"]) == 0  # the stale lock is taken over
    err = capsys.readouterr().err
    assert f"pid {first.pid}" in err and "ended without releasing" in err
    assert torch.load(tmp_path / "ckpt/dup/last.pt", weights_only=True)["step"] == 1


def make_unwritable(folder: Path, monkeypatch) -> None:
    """``folder`` read-only; as root (where mode bits do not stop writes) its write test fails instead."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return
    import utils.cli

    real = utils.cli.probe_write

    def refuse(path: Path) -> None:
        if Path(path).resolve() == folder.resolve():
            raise PermissionError(13, "Permission denied")
        real(path)

    monkeypatch.setattr(utils.cli, "probe_write", refuse)


def test_read_only_run_log_and_encoder_folders_are_found_before_the_first_step(tiny_layout, text_ckpt, tmp_path,
                                                                              capsys, monkeypatch):
    import shutil

    from utils.text.embeddings import training_embeddings

    encoder = tmp_path / "encoder"
    shutil.copytree(text_ckpt, encoder, copy_function=os.link)
    training_embeddings(encoder)  # what training would otherwise write there first
    args = base_args(tiny_layout, encoder, tmp_path, "ro")
    assert train.main(args + ["--max_steps", "1"]) == 0
    run_dir = tmp_path / "ckpt/ro"
    capsys.readouterr()
    (tmp_path / "file").write_text("a file, not a folder")
    resume = ["--max_steps", "3", "--resume", str(run_dir / "last.pt")]
    for case, folder in [(args + ["--ckpt_dir", str(tmp_path / "file" / "ckpt")], tmp_path / "file/ckpt/ro"),
                         (args + ["--log_dir", str(tmp_path / "file" / "logs")], tmp_path / "file/logs/ro")]:
        assert train.main(case + resume) == 2
        out, err = capsys.readouterr()
        assert err.strip().splitlines() == [err.strip()] and str(folder) in err and "cannot write" in err
        assert "TextPromptIR:" not in out and "decoded once" not in out  # before any work
    with monkeypatch.context() as m:
        make_unwritable(encoder, m)
        assert train.main(args + ["--max_steps", "3", "--resume"]) == 2
        out, err = capsys.readouterr()
        assert err.strip().splitlines() == [err.strip()] and str(encoder) in err and "cannot write" in err
        assert "TextPromptIR:" not in out and "decoded once" not in out
    encoder.chmod(0o755)
    with monkeypatch.context() as m:
        make_unwritable(run_dir, m)
        assert train.main(args + ["--max_steps", "3", "--resume"]) == 2
        out, err = capsys.readouterr()
        assert len(err.strip().splitlines()) == 1 and str(run_dir) in err and "TextPromptIR:" not in out
    run_dir.chmod(0o755)
    assert torch.load(run_dir / "last.pt", weights_only=True)["step"] == 1


def test_a_training_image_over_the_pixel_limit_is_one_line_naming_the_option(tiny_layout, text_ckpt, tmp_path,
                                                                               capsys):
    import shutil

    from tests.conftest import png_claiming

    data = tmp_path / "Train"
    shutil.copytree(tiny_layout / "Train", data)
    bomb = png_claiming(data / "Denoise" / "huge.png", 20000, 20000)
    args = base_args(tiny_layout, text_ckpt, tmp_path, "bomb")
    args[args.index("--data_root") + 1] = str(data)
    assert train.main(args + ["--max_steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bomb) in err[0] and "--max_pixels" in err[0]


def test_a_validation_root_without_test_sets_is_an_error(tiny_layout, text_ckpt, tmp_path, capsys):
    (tmp_path / "empty_test").mkdir()
    args = base_args(tiny_layout, text_ckpt, tmp_path, "noval") + ["--val_root", str(tmp_path / "empty_test")]
    assert train.main(args + ["--max_steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "empty_test") in err[0] and "--val_root" in err[0]


def test_the_options_file_a_run_saved_repeats_the_run_bit_for_bit(tiny_layout, text_ckpt, tmp_path, capsys):
    original = base_args(tiny_layout, text_ckpt, tmp_path, "first") + ["--epochs", "5", "--classifier_steps", "0"]
    assert train.main(original + ["--max_steps", "40"]) == 0
    saved = tmp_path / "ckpt/first/options.yaml"
    assert train.main(["--config", str(saved), "--ckpt_dir", str(tmp_path / "ckpt"), "--log_dir",
                       str(tmp_path / "logs"), "--name", "again", "--no_progress", "--max_steps", "40"]) == 0
    a, b = weights(tmp_path / "ckpt/first/last.pt"), weights(tmp_path / "ckpt/again/last.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.load(tmp_path / "ckpt/again/last.pt", weights_only=True)["step"] == 40
    assert (tmp_path / "ckpt/again/options.yaml").read_bytes() == saved.read_bytes()
    for per_run in ("name:", "stage:", "resume:", "overwrite:", "max_steps:"):
        assert per_run not in saved.read_text()


def test_the_identity_floor_is_the_losss_own_unless_a_recipe_or_option_sets_it(tiny_layout, text_ckpt, tmp_path,
                                                                                 monkeypatch):
    from utils.train.step import IDENTITY_FLOOR_DB, TrainStep

    floors = []

    class Spy(TrainStep):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            floors.append(self.identity_floor_db)

    monkeypatch.setattr(train, "TrainStep", Spy)
    for run, extra in (("floor_default", []), ("floor_30", ["--identity_floor", "30"])):
        assert train.main(base_args(tiny_layout, text_ckpt, tmp_path, run) + ["--max_steps", "1", *extra]) == 0
    assert floors == [IDENTITY_FLOOR_DB, 30.0]


def test_a_torchrun_worker_ends_with_its_code_and_its_output_written(tmp_path):
    # a DDP worker leaves without Python's shutdown (utils.train.dist.end_process): what it printed
    # still arrives, and its exit code is the run's
    script = "from utils.train.dist import end_process; print('saved'); print('warned', file=__import__('sys').stderr); end_process(3)"
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # pipes are block-buffered
    for world, expected in (("2", 3), ("1", 3)):
        r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                           env={**buffered, "WORLD_SIZE": world})
        assert (r.returncode, r.stdout, r.stderr.strip()) == (expected, "saved\n", "warned")
