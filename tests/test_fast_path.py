"""The fast implementation computes the same function as the reference one: outputs within
1e-4 in fp32 and matching gradients, on random inputs and random weights."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from net.blocks import GDFN, MDTA, FastTransformerBlock, LayerNorm2d, TransformerBlock, _from_tokens, _to_tokens
from net.model import ModelConfig, TextPromptIR

TOL = 1e-4
REPO = Path(__file__).resolve().parents[1]
TEXT_DIM = 24


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Move every weight off its initial value: LayerNorm weights/biases and biases get
    noise around their init, temperatures become distinct positive values, matrices
    are rescaled per entry."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith("temperature"):
                p.copy_(0.2 + 3 * torch.rand(p.shape, generator=g))
            elif p.dim() == 1:
                p.add_(0.5 * noise)
            else:
                p.mul_(1 + 0.5 * noise)
    return module


def run(module, inputs, grad=True):
    """Output and gradients (inputs first, then parameters) of a scalar loss."""
    module.zero_grad(set_to_none=True)
    xs = [x.detach().clone().requires_grad_(grad and x.is_floating_point()) for x in inputs]
    out = module(*xs)
    if not grad:
        return out.detach(), []
    (out * torch.linspace(-1, 2, out.numel()).reshape(out.shape)).sum().backward()  # position-dependent
    grads = [x.grad for x in xs] + [p.grad for p in module.parameters()]
    return out.detach(), grads


def assert_same(reference, fast, inputs, grad=True):
    """``fast``, carrying ``reference``'s weights, computes the same outputs and gradients."""
    out_r, grads_r = run(reference, inputs, grad)
    out_f, grads_f = run(fast, inputs, grad)
    assert out_f.shape == out_r.shape
    assert (out_f - out_r).abs().max() <= TOL, (out_f - out_r).abs().max()
    assert len(grads_f) == len(grads_r)
    for gf, gr in zip(grads_f, grads_r):
        assert (gf is None) == (gr is None)
        if gr is not None:
            scale = max(1.0, gr.abs().max().item())
            assert (gf - gr).abs().max() <= TOL * scale, ((gf - gr).abs().max(), scale)


def pair(**kw) -> tuple[TextPromptIR, TextPromptIR]:
    """The reference and the fast network of one tiny config, with the same random weights."""
    cfg = ModelConfig(**{**dict(text_dim=TEXT_DIM, dim=8, num_blocks=(1, 2, 1, 1), num_refinement_blocks=1,
                                heads=(1, 2, 2, 4)), **kw})
    torch.manual_seed(0)
    reference = randomize_(TextPromptIR(cfg, impl="reference"))
    fast = TextPromptIR(cfg, impl="fast")
    fast.load_state_dict(reference.state_dict())
    return reference, fast


class Tokens(torch.nn.Module):
    """A module's token method seen as an NCHW module, to compare it with the module's forward."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m, t = self.module, _to_tokens(x)
        if isinstance(m, LayerNorm2d):
            out = m.forward_tokens(t)
        elif isinstance(m, MDTA):
            qkv = _to_tokens(m.qkv_dwconv(m.qkv(x.contiguous(memory_format=torch.channels_last))))
            out = m.attend_tokens(qkv, None)
        else:
            w_in = m.project_in.weight.reshape(m.project_in.out_channels, -1).t()
            out = m.forward_tokens(t, w_in, m.project_in.bias, None, (h, w))
        return _from_tokens(out, h, w)


@pytest.mark.parametrize("layernorm_type", ["WithBias", "BiasFree"])
@pytest.mark.parametrize("text_cond", ["film", "none"])
def test_network_outputs_and_gradients_match(layernorm_type, text_cond):
    reference, fast = pair(layernorm_type=layernorm_type, text_cond=text_cond)
    torch.manual_seed(1)
    x = torch.rand(2, 3, 21, 35)  # odd size: padded to 24x40 inside
    text = torch.randn(2, TEXT_DIM)
    assert_same(reference, fast, [x, text])


def test_network_with_conv_biases_matches():
    reference, fast = pair(bias=True, layernorm_type="BiasFree")
    torch.manual_seed(2)
    assert_same(reference, fast, [torch.rand(1, 3, 17, 9), torch.randn(1, TEXT_DIM)])


@pytest.mark.parametrize("text_cond", ["film", "none"])
def test_inference_without_autograd_matches(text_cond):
    """The no-grad path gates in place; it must give the same output."""
    reference, fast = (m.eval() for m in pair(text_cond=text_cond))
    x, text = torch.rand(3, 3, 16, 24), torch.randn(3, TEXT_DIM)
    with torch.inference_mode():
        out_r = reference(x, text)
        out_f = fast(x, text)
    with torch.no_grad():
        out_ng = fast(x, text)
    assert (out_f - out_r).abs().max() <= TOL
    assert torch.equal(out_f, out_ng)


def blocks(dim: int, heads: int, with_bias: bool, prompt_dim: int | None, seed: int):
    torch.manual_seed(3)
    args = (dim, heads, 2.66, not with_bias, with_bias, prompt_dim)
    reference, fast = randomize_(TransformerBlock(*args), seed=seed), FastTransformerBlock(*args)
    fast.load_state_dict(reference.state_dict())
    return reference, fast


@pytest.mark.parametrize("size", [(5, 7), (1, 9), (8, 1)])
@pytest.mark.parametrize("heads", [1, 3])
@pytest.mark.parametrize("with_bias", [True, False])
def test_block_matches_on_odd_sizes(size, heads, with_bias):
    reference, fast = blocks(12, heads, with_bias, 10, seed=heads)
    assert_same(reference, fast, [torch.randn(2, 12, *size), torch.randn(2, 10)])


def test_block_accepts_channels_last_and_strided_inputs():
    reference, fast = blocks(8, 2, True, None, seed=4)
    x = torch.randn(2, 8, 6, 10)
    wide = torch.zeros(2, 8, 6, 20)
    wide[..., ::2] = x
    with torch.no_grad():
        ref = reference(x, None)
        for variant in (x.contiguous(memory_format=torch.channels_last), wide[..., ::2]):
            assert torch.equal(variant, x)
            assert (fast(variant, None) - ref).abs().max() <= TOL


@pytest.mark.parametrize("with_bias", [True, False])
def test_token_computations_of_the_modules_match_their_forward(with_bias):
    torch.manual_seed(5)
    x = torch.randn(2, 12, 7, 11)
    for module in (LayerNorm2d(12, with_bias), MDTA(12, 4, bias=with_bias), GDFN(12, 2.66, bias=with_bias)):
        randomize_(module)
        assert_same(module, Tokens(module), [x])


def test_both_implementations_share_parameters_and_cannot_mix():
    reference, fast = pair()
    assert {k: v.shape for k, v in reference.state_dict().items()} == {k: v.shape for k, v in fast.state_dict().items()}
    assert all(type(b) is FastTransformerBlock for b in fast.transformer_blocks())
    assert all(type(b) is TransformerBlock for b in reference.transformer_blocks())
    assert not any(hasattr(m, "fast") for m in fast.modules())  # no mode flag left to flip


def test_bench_runs_both_implementations_and_writes_json(tmp_path):
    """bench.py end to end on the demo net (tiny sizes): one JSON with every measurement."""
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench.py"), "--preset", "demo", "--sizes", "16,24x8", "--repeats", "1",
         "--warmup", "0", "--train_batch", "2", "--train_size", "16", "--train_steps", "1", "--no_flops",
         "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert [(r["impl"], r["size"]) for r in result["inference"]] == [
        ("fast", [16, 16]), ("reference", [16, 16]), ("fast", [8, 24]), ("reference", [8, 24])]
    assert all(r["latency_ms"] > 0 and "error" not in r for r in result["inference"])
    assert [r["impl"] for r in result["train"]] == ["fast", "reference"]
    assert all(r["images_per_s"] > 0 for r in result["train"])
    assert "| 8x24 |" in proc.stdout and "fast / reference" in proc.stdout


def test_bench_refuses_bad_sizes_in_one_line():
    proc = subprocess.run([sys.executable, str(REPO / "bench.py"), "--sizes", "12,big"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: --sizes '12,big': write sizes like 128,256,1024x768 (WxH)"]
