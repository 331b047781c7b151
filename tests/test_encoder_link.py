"""How a restoration checkpoint finds its instruction encoder (utils/text/encoder_link.py): a copy
whose link to the encoder broke is told to point at the encoder used in training first."""
from __future__ import annotations

import shutil

import pytest
import torch

from utils.errors import UserError
from utils.text.encoder_link import encoder_for_checkpoint


def test_a_copied_checkpoint_without_its_encoder_is_told_to_pass_text_ckpt_first(tiny_ckpt, tmp_path):
    ckpt = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    ckpt["text_encoder"]["dir"] = "../text_encoder"  # relative to the checkpoint, as train.py records it
    copy = tmp_path / "elsewhere" / "last.pt"
    copy.parent.mkdir()
    shutil.copyfile(tiny_ckpt, copy)
    with pytest.raises(UserError) as e:
        encoder_for_checkpoint(copy, ckpt, 384)
    message = str(e.value)
    assert "\n" not in message and message.startswith(str(copy))
    assert "--text_ckpt" in message and "--stage text" in message
    assert message.index("--text_ckpt") < message.index("--stage text")


def test_a_text_ckpt_without_an_encoder_names_that_option(tiny_ckpt, tmp_path):
    ckpt = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    with pytest.raises(UserError, match=r"^--text_ckpt .*empty: no fine-tuned instruction encoder there"):
        encoder_for_checkpoint(tiny_ckpt, ckpt, 384, tmp_path / "empty")


def test_the_encoder_used_in_training_loads(tiny_ckpt, text_ckpt):
    ckpt = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    assert encoder_for_checkpoint(tiny_ckpt, ckpt, 384).hidden_size == 384
