"""The restoration network as ONNX, for deployment without PyTorch (TextPromptIR Sec. 3).

``model.onnx`` takes ``image`` (1, 3, H, W) float32 in [0, 1] of any H and W, and ``embedding``
(1, text_dim), the instruction's embedding; it returns ``restored`` (1, 3, H, W). The release's
``task_embeddings.safetensors`` holds each task's embedding, so a deployment for the fixed tasks
needs no BERT. The graph is traced (TorchScript exporter) on an image whose sides are not multiples
of 8, so the padding to a multiple of 8 and the crop back are in it for every size. What it does
not hold: the instruction encoder (free text needs ``text_encoder/``), the degradation classifier,
tiling, and the replicate padding torch uses for sides under 5 pixels (the graph reflects, so it
takes sides of 8 pixels and more).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from net.model import TextPromptIR
from utils.errors import UserError
from utils.release.folder import ONNX_FILE

TRACE_SIZE = (77, 123)  # (H, W), not multiples of 8: the padding is traced into the graph
OPSET = 17
TOLERANCE = 1e-4  # largest difference from torch accepted at export


def session(path: str | Path, threads: int = 0):
    """An onnxruntime CPU session of ``path`` (``threads`` 0: onnxruntime's default)."""
    try:
        import onnxruntime as ort  # optional: only ONNX export and its check need it
    except ImportError:
        raise UserError("onnxruntime is not installed: `pip install -r requirements.txt`") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_inputs(model: TextPromptIR, img: torch.Tensor, embedding: torch.Tensor) -> dict[str, np.ndarray]:
    feed = {"image": img.numpy()}
    if model.config.text_cond != "none":
        feed["embedding"] = embedding.numpy()
    return feed


def write_onnx(model: TextPromptIR, folder: str | Path) -> Path:
    """Export ``model`` (any implementation: the reference one is traced) to ``folder/model.onnx``
    and check it against torch on the traced size; a larger difference than TOLERANCE is an error."""
    twin = TextPromptIR(model.config, impl="reference")
    twin.load_state_dict(model.state_dict())
    twin.eval()
    path = Path(folder) / ONNX_FILE
    img = torch.rand(1, 3, *TRACE_SIZE, generator=torch.Generator().manual_seed(0))  # (1, 3, H, W)
    embedding = torch.randn(1, model.config.text_dim, generator=torch.Generator().manual_seed(1))  # (1, text_dim)
    conditioned = model.config.text_cond != "none"
    names = ["image", "embedding"] if conditioned else ["image"]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes on the shape arithmetic it records
        torch.onnx.export(twin, (img, embedding) if conditioned else (img,), str(path), dynamo=False,
                          opset_version=OPSET, input_names=names, output_names=["restored"],
                          dynamic_axes={"image": {2: "height", 3: "width"}, "restored": {2: "height", 3: "width"}})
    diff = largest_difference(twin, path, img, embedding)
    if diff > TOLERANCE:
        raise UserError(f"{path}: onnxruntime differs from torch by {diff:.2e} (> {TOLERANCE:g}); not exported")
    return path


def largest_difference(model: TextPromptIR, path: str | Path, img: torch.Tensor, embedding: torch.Tensor,
                       ort_session=None) -> float:
    """The largest absolute difference between onnxruntime's output and torch's on one image."""
    ort_session = ort_session or session(path)
    with torch.no_grad():
        ref = model(img, embedding).numpy()
    out = ort_session.run(None, onnx_inputs(model, img, embedding))[0]
    return float(np.abs(out - ref).max())
