"""Checkpoint files: formats old and new, what is refused and how it is said."""
from __future__ import annotations

import pytest
import torch

from net.model import ModelConfig, TextPromptIR
from utils.checkpoint import FORMAT, NonFiniteWeights, load_checkpoint, load_model, remove_stale_temps, save_checkpoint
from utils.errors import UserError

TINY = ModelConfig(text_dim=16, dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 1, 1))


def test_a_format_1_checkpoint_with_model_args_still_loads(tmp_path):
    m = TextPromptIR(TINY)
    path = tmp_path / "old.pt"
    torch.save({"format": "textpromptir/1", "model": m.state_dict(), "model_args": TINY.to_dict(),
                "scaler": None}, path)  # as the first version of train.py wrote it
    loaded, ckpt = load_model(path)
    assert loaded.config == TINY and ckpt["format"] == FORMAT
    x, t = torch.rand(1, 3, 16, 16), torch.randn(1, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x, t), m(x, t))


def test_an_unknown_format_is_refused_in_one_line(tmp_path):
    path = tmp_path / "future.pt"
    torch.save({"format": "textpromptir/9", "model": {}, "config": TINY.to_dict()}, path)
    with pytest.raises(UserError) as err:
        load_checkpoint(path)
    assert str(err.value).splitlines() == [
        f"{path}: checkpoint format 'textpromptir/9' is not one this version reads "
        "(textpromptir/1, textpromptir/2); update this project or retrain"]


@pytest.mark.parametrize("content", [b"", b"\x00\x01 random bytes " * 50])
def test_bytes_that_are_no_checkpoint_say_so(tmp_path, content):
    path = tmp_path / "noise.pt"
    path.write_bytes(content)
    with pytest.raises(UserError, match="not a checkpoint written by train.py") as err:
        load_checkpoint(path)
    assert "Weights only load failed" not in str(err.value) and "\n" not in str(err.value)


def test_mismatched_weights_name_the_first_tensor_and_its_shapes(tmp_path):
    m = TextPromptIR(TINY)
    path = tmp_path / "mismatch.pt"
    save_checkpoint(path, {"model": m.state_dict(), "config": {**TINY.to_dict(), "dim": 16, "heads": [1, 1, 1, 1]}})
    with pytest.raises(UserError) as err:
        load_model(path)
    assert "patch_embed.weight: checkpoint (8, 3, 3, 3) vs network (16, 3, 3, 3)" in str(err.value)


def test_non_finite_weights_are_never_written(tmp_path):
    m = TextPromptIR(TINY)
    state = m.state_dict()
    state["output.weight"][0, 0, 0, 0] = float("nan")
    path = tmp_path / "last.pt"
    with pytest.raises(NonFiniteWeights, match="output.weight"):
        save_checkpoint(path, {"model": state, "config": TINY.to_dict()})
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_half_written_saves_are_cleared(tmp_path):
    (tmp_path / "last.pt.abc123.tmp").write_bytes(b"partial")
    (tmp_path / "keep.tmp").write_bytes(b"not ours")
    assert [p.name for p in remove_stale_temps(tmp_path)] == ["last.pt.abc123.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.tmp"]


def test_a_run_saved_before_utils_was_regrouped_still_evaluates_and_resumes(tmp_path, tiny_layout, text_ckpt, capsys):
    """A checkpoint with every key the earlier tree's train.py wrote, beside an encoder folder that
    holds only the embedding cache under its earlier name (prompts.pt), as a training machine's copy."""
    import test as test_script
    import train as train_script
    from net.text_encoder import InstructionEncoder
    from utils.text.embeddings import LEGACY_EMBEDDINGS_FILE, write_embeddings
    from utils.train.schedulers import warmup_cosine

    encoder = tmp_path / "text_encoder"
    encoder.mkdir()
    cache = write_embeddings(InstructionEncoder.load(text_ckpt), encoder)
    (encoder / "embeddings.pt").rename(encoder / LEGACY_EMBEDDINGS_FILE)
    config = ModelConfig(text_dim=cache["hidden_size"], dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1,
                         heads=(1, 1, 1, 1))
    torch.manual_seed(0)
    net = TextPromptIR(config)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    scheduler = warmup_cosine(optimizer, warmup_steps=1, total_steps=4)
    run = tmp_path / "ckpt" / "old"
    run.mkdir(parents=True)
    torch.save({"format": "textpromptir/2", "model": net.state_dict(), "config": config.to_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "epoch": 0, "step": 0,
                "batches_done_in_epoch": 0,
                "rng": {"torch": torch.get_rng_state(), "python": __import__("random").getstate(),
                        "numpy": torch.zeros(624, dtype=torch.int64)},
                "text_encoder": {"dir": "../../text_encoder", "fingerprint": cache["fingerprint"],
                                 "bank_sha256": cache["bank_sha256"], "id": cache["encoder_id"],
                                 "hidden_size": cache["hidden_size"]},
                "options": {"batch_size": 2}}, run / "last.pt")
    code = test_script.main(["--ckpt", str(run / "last.pt"), "--test_root", str(tiny_layout / "test"), "--mode",
                             "derain", "--output_dir", str(tmp_path / "out"), "--num_workers", "0", "--no_progress"])
    assert code == 0, capsys.readouterr().err
    assert "using the stored embeddings of the default instructions" in capsys.readouterr().out
    code = train_script.main(["--resume", "--name", "old", "--ckpt_dir", str(tmp_path / "ckpt"), "--log_dir",
                              str(tmp_path / "logs"), "--data_root", str(tiny_layout / "Train"), "--text_ckpt",
                              str(encoder), "--dim", "8", "--num_blocks", "1", "1", "1", "1",
                              "--num_refinement_blocks", "1", "--heads", "1", "1", "1", "1", "--batch_size", "2",
                              "--patch_size", "16", "--num_workers", "0", "--max_steps", "1", "--val_every", "0",
                              "--repeat", "derain=1", "dehaze=1", "--no_progress"])
    assert code == 0, capsys.readouterr().err
    assert load_checkpoint(run / "last.pt")["step"] == 1
