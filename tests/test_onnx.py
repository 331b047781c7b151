"""The ONNX export (python -m utils.release export --onnx): onnxruntime on the CPU computes what
torch computes, for any height and width, with the instruction embedding as an input."""
from __future__ import annotations

import pytest
import torch

from net.model import TextPromptIR
from options import model_config, train_options
from utils.release.onnx_export import largest_difference, session, write_onnx

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The demo network (random weights) and its model.onnx."""
    config = model_config(train_options(["--preset", "demo"]), text_dim=384)
    torch.manual_seed(0)
    model = TextPromptIR(config, impl="fast").eval()
    path = write_onnx(model, tmp_path_factory.mktemp("onnx"))
    return model, path, session(path)


@pytest.mark.parametrize("size", [(77, 123), (256, 256), (8, 40)])
def test_onnxruntime_matches_torch(exported, size):
    model, path, ort_session = exported
    gen = torch.Generator().manual_seed(size[0])
    img = torch.rand(1, 3, *size, generator=gen)  # (1, 3, H, W)
    embedding = torch.randn(1, 384, generator=gen)  # (1, text_dim)
    assert largest_difference(model, path, img, embedding, ort_session) <= 1e-4
    out = ort_session.run(None, {"image": img.numpy(), "embedding": embedding.numpy()})[0]
    assert out.shape == (1, 3, *size)


def test_the_embedding_steers_the_exported_network(exported):
    _, _, ort_session = exported
    img = torch.rand(1, 3, 32, 32).numpy()
    a = ort_session.run(None, {"image": img, "embedding": torch.zeros(1, 384).numpy()})[0]
    b = ort_session.run(None, {"image": img, "embedding": torch.ones(1, 384).numpy()})[0]
    assert abs(a - b).max() > 1e-4
