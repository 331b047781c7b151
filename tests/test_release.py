"""Release folders (python -m utils.release): the round trip from last.pt to a folder of safetensors
and back with bit-identical pixels, one line for each kind of bad folder, a Hub id that cannot be
reached, results shared by a checkpoint and its release, and train.py --init."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import train
from net.degradation_classifier import DegradationClassifier
from net.model import ModelConfig, TextPromptIR
from tests.conftest import TINY_CONFIG
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.digest import weights_sha256
from utils.errors import UserError
from utils.eval.results import Protocol, Results
from utils.release.__main__ import main as release
from utils.release.folder import PICKLE_SUFFIXES, SUMS, write_sums
from utils.runtime.engine import Restorer
from utils.text.bank import DEFAULT_INSTRUCTIONS
from utils.train.resume import init_weights


@pytest.fixture(scope="module")
def source(tiny_ckpt, tmp_path_factory) -> Path:
    """The tiny checkpoint with a degradation classifier and a results file of its own."""
    ckpt = load_checkpoint(tiny_ckpt)
    net = DegradationClassifier()
    ckpt["classifier"] = {"labels": list(net.labels), "config": {}, "state": net.state_dict()}
    path = tmp_path_factory.mktemp("source") / "last.pt"
    save_checkpoint(path, ckpt)
    return path


@pytest.fixture(scope="module")
def results(source, tmp_path_factory) -> Path:
    """A results.json of ``source`` with one scored set (as test.py writes it)."""
    out = tmp_path_factory.mktemp("output")
    scored = Results.open(out, source, False, weights_sha256(load_checkpoint(source)["model"]))
    summary = {"task": "derain", "label": "Rain100L", "name": "Rain100L", "sigma": None, "n": 2, "psnr": 30.5,
               "ssim": 0.9, "input_psnr": 25.0, "input_ssim": 0.8}
    protocol = Protocol(route="instruction", instruction=None, precision="fp32", y_channel=True, crop16=True)
    scored.put(summary, [], protocol, "test")
    scored.write()
    return out / "results.json"


@pytest.fixture(scope="module")
def release_dir(source, results, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("release") / "tiny"
    assert release(["export", "--ckpt", str(source), "--results", str(results), "--out", str(out)]) == 0
    return out


def test_the_folder_holds_every_part_with_a_sha256_and_no_pickle(release_dir):
    files = sorted(p.relative_to(release_dir).as_posix() for p in release_dir.rglob("*") if p.is_file())
    for name in ("config.json", "model.safetensors", "README.md", "task_embeddings.safetensors",
                 "classifier.safetensors", "text_encoder/model.safetensors", "text_encoder/head.safetensors",
                 "text_encoder/labels.json", "text_encoder/config.json", "text_encoder/tokenizer.json"):
        assert name in files
    listed = [line.split("  ", 1)[1] for line in (release_dir / SUMS).read_text().splitlines()]
    assert sorted(listed) == [f for f in files if f != SUMS]
    assert not [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    umask = os.umask(0)
    os.umask(umask)
    for path in (p for p in release_dir.rglob("*") if p.is_file()):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path  # ordinary files, not private ones
        if path.suffix == ".safetensors":
            assert load_file(path)  # tensors only
        else:  # text: JSON, the tokenizer's files, the card, the sums; neither a pickle nor torch.save's zip
            head = path.read_bytes()[:4]
            assert not head.startswith(b"PK") and not (head[:1] == b"\x80" and head[1] in range(2, 6)), path
            path.read_text(encoding="utf-8")
    card = (release_dir / "README.md").read_text()
    assert "Rain100L" in card and "30.50" in card and "Y channel" in card  # the results table with its protocol
    assert "rain (derain)" in card and "degradation classifier" in card and "@article" in card


def test_outputs_are_bit_identical_to_the_checkpoint(source, release_dir):
    rgb = np.random.default_rng(0).random((37, 45, 3), dtype=np.float32)
    from_ckpt = Restorer(source, "cpu", precision="fp32")
    from_release = Restorer(release_dir, "cpu", precision="fp32")
    assert np.array_equal(from_ckpt(rgb, "remove the rain"), from_release(rgb, "remove the rain"))
    assert from_release.reads_images and from_release.tasks == from_ckpt.tasks
    for a, b in zip(from_ckpt.classifier.state_dict().values(), from_release.classifier.state_dict().values()):
        assert torch.equal(a, b)
    stored = load_file(release_dir / "task_embeddings.safetensors")
    assert torch.equal(stored["derain"], from_release.encoder.embed([DEFAULT_INSTRUCTIONS["derain"]])[0])
    net = TextPromptIR.from_pretrained(release_dir)
    assert weights_sha256(net.state_dict()) == weights_sha256(load_checkpoint(source)["model"])


def test_a_checkpoint_and_its_release_share_one_results_file(source, release_dir, results):
    identity = weights_sha256(load_checkpoint(release_dir)["model"])
    assert identity == weights_sha256(load_checkpoint(source)["model"])
    assert len(Results.open(results.parent, release_dir, False, identity).sets) == 1
    with pytest.raises(UserError, match="another checkpoint"):
        Results.open(results.parent, release_dir, False, "0" * 64)


def test_results_files_written_before_keep_working(source, tmp_path):
    from utils.digest import file_sha256

    (tmp_path / "results.json").write_text(json.dumps({
        "format": "textpromptir-results/1", "sets": [],
        "checkpoint": {"path": str(source), "sha256": file_sha256(source)}}))  # the file's SHA-256, as before
    Results.open(tmp_path, source, False, weights_sha256(load_checkpoint(source)["model"]))


def test_another_checkpoints_results_are_refused(source, results, tmp_path, capsys):
    ckpt = load_checkpoint(source)
    ckpt["model"] = {k: v + 1 if v.is_floating_point() else v for k, v in ckpt["model"].items()}  # other weights
    save_checkpoint(tmp_path / "other.pt", ckpt)
    assert release(["export", "--ckpt", str(tmp_path / "other.pt"), "--results", str(results),
                    "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "another checkpoint" in err
    assert not (tmp_path / "r").exists()


def test_an_existing_folder_is_replaced_only_with_overwrite(source, release_dir, capsys):
    assert release(["export", "--ckpt", str(source), "--out", str(release_dir)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def rewrite_weights(folder: Path, change) -> None:
    state = load_file(folder / "model.safetensors")
    save_file(change(state), folder / "model.safetensors")
    write_sums(folder)


def first_key(state: dict) -> str:
    return sorted(state)[0]


BAD = {
    "missing file": (lambda f: (f / "text_encoder/head.safetensors").unlink(), "head.safetensors: missing file"),
    "sha mismatch": (lambda f: (f / "README.md").write_text("edited"), "README.md: SHA-256 mismatch"),
    "another project": (lambda f: (f / "config.json").write_text(json.dumps({"model_type": "bert"})),
                        "from another project (bert"),
    "tensors do not fit": (lambda f: rewrite_weights(f, lambda s: {**s, "patch_embed.weight": torch.zeros(4, 3, 3, 3)}),
                           "do not fit the network config.json describes (first: patch_embed.weight"),
    "truncated, sums matched": (lambda f: truncate(f), "truncated or damaged"),
    "truncated": (lambda f: truncate(f, sums=False), "model.safetensors: SHA-256 mismatch"),
    "pickle inside": (lambda f: torch.save({}, f / "extra.pt"), "extra.pt: a pickle-format file"),
}


def truncate(folder: Path, sums: bool = True) -> None:
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    if sums:
        write_sums(folder)


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_folder_is_one_line(release_dir, tmp_path, capsys, case):
    damage, expected = BAD[case]
    folder = tmp_path / "copy"
    shutil.copytree(release_dir, folder)
    damage(folder)
    assert release(["verify", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    with pytest.raises(UserError):
        load_checkpoint(folder)


def test_an_unreachable_hub_id_is_one_line_naming_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as caught:
        load_checkpoint("nobody-here/no-such-release")
    assert "nobody-here/no-such-release" in str(caught.value) and "\n" not in str(caught.value)


def test_bf16_halves_the_weights(source, tmp_path):
    assert release(["export", "--ckpt", str(source), "--out", str(tmp_path / "half"), "--dtype", "bf16"]) == 0
    full = load_checkpoint(source)["model"]
    half = load_file(tmp_path / "half/model.safetensors")
    assert half["patch_embed.weight"].dtype == torch.bfloat16
    assert torch.equal(load_checkpoint(tmp_path / "half")["model"]["patch_embed.weight"],
                       full["patch_embed.weight"].bfloat16().float())


def test_init_starts_a_new_run_from_a_release(tiny_layout, text_ckpt, release_dir, tmp_path, capsys):
    from tests.test_train import base_args

    args = base_args(tiny_layout, text_ckpt, tmp_path, "tuned")
    i = args.index("--lr")
    args[i + 1] = "1e-30"  # one step that leaves the weights where they started
    assert train.main(args + ["--max_steps", "1", "--init", str(release_dir)]) == 0
    assert f"initialised from {release_dir}" in capsys.readouterr().out
    tuned = torch.load(tmp_path / "ckpt/tuned/last.pt", weights_only=True)
    start = load_checkpoint(release_dir)["model"]
    assert tuned["step"] == 1
    for k in start:
        torch.testing.assert_close(tuned["model"][k], start[k], atol=1e-6, rtol=0, msg=k)
    with pytest.raises(UserError, match="another network config"):
        init_weights(str(release_dir), TextPromptIR(ModelConfig(**{**TINY_CONFIG, "dim": 16})), None, True)
    assert train.main(base_args(tiny_layout, text_ckpt, tmp_path, "x") + ["--init", str(release_dir), "--resume"]) == 2
    assert "pass one of them" in capsys.readouterr().err



def test_the_config_records_the_threshold_the_encoder_chose(source, results, tmp_path, monkeypatch):
    import utils.release.export as export
    from net.text_encoder import InstructionEncoder

    linked = export.encoder_for_checkpoint

    def chosen(*args, **kwargs):  # an encoder whose text stage chose 0.55 on its validation files
        encoder = linked(*args, **kwargs)
        encoder.threshold = 0.55
        return encoder

    monkeypatch.setattr(export, "encoder_for_checkpoint", chosen)
    out = tmp_path / "chosen"
    assert release(["export", "--ckpt", str(source), "--results", str(results), "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["text_encoder"]["task_threshold"] == 0.55 == InstructionEncoder.load(out / "text_encoder").threshold
