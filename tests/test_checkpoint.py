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
