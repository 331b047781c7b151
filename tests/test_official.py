"""The side-by-side check against the official TextPromptIR code (bench.py --official).

The official code is not part of this project: the parity test runs where
``TEXTPROMPTIR_OFFICIAL`` points at a clone of github.com/MoTong-AI-studio/TextPromptIR
(and einops is installed), and skips elsewhere.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from net.model import ModelConfig, TextPromptIR
from utils.bench.official import _official_name

REPO = Path(__file__).resolve().parents[1]
OFFICIAL = os.environ.get("TEXTPROMPTIR_OFFICIAL")


@pytest.mark.parametrize("ours, theirs", [
    ("patch_embed.weight", "patch_embed.proj.weight"),
    ("text_mlp.2.bias", "linear2.bias"),
    ("encoder1.blocks.0.norm1.weight", "encoder_level1.0.norm1.body.weight"),
    ("encoder1.blocks.3.mod1.eca.weight", "encoder_level1.3.attn.fusion.conv.weight"),
    ("latent.blocks.7.mod2.to_shift.bias", "latent.7.ffn.linear7_2.bias"),
    ("decoder1.blocks.1.mod1.text_proj.weight", "decoder_level1.1.attn.linear2.weight"),
    ("refinement.blocks.0.mod2.to_scale.weight", "refinement.0.ffn.linear2_1.weight"),
    ("decoder3.blocks.5.attn.temperature", "decoder_level3.5.attn.temperature"),
    ("reduce3.weight", "reduce_chan_level3.weight"),
    ("down1_2.body.0.weight", "down1_2.body.0.weight"),
])
def test_parameter_names_map_to_the_official_ones(ours, theirs):
    assert ours in TextPromptIR(ModelConfig(text_dim=768)).state_dict()
    assert _official_name(ours) == theirs


def test_bench_refuses_a_folder_without_the_official_code(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "bench.py"), "--official", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'net' / 'model.py'}: not found; --official takes a clone of "
        "github.com/MoTong-AI-studio/TextPromptIR"]


@pytest.mark.skipif(not OFFICIAL, reason="set TEXTPROMPTIR_OFFICIAL to a clone of the official repository")
def test_ours_and_the_official_network_compute_the_same_function():
    pytest.importorskip("einops")
    sys.path.insert(0, str(REPO))
    from bench import net_config, official_parity

    torch.set_num_threads(1)
    diffs = official_parity({"net": net_config("paper"), "official": OFFICIAL})
    assert diffs["reference_max_abs_diff"] < 1e-5, diffs
    assert diffs["fast_max_abs_diff"] < 1e-5, diffs
