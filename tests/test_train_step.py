"""The training step: compiled blocks train like eager ones, the loop checks the loss only every
--log_every steps yet still stops a NaN run inside that window, --cuda_graph falls back cleanly."""
from __future__ import annotations

import math

import pytest
import torch

import train
from net.model import ModelConfig, TextPromptIR
from tests.test_train import base_args
from utils.runtime.compile import compile_blocks
from utils.train.step import TrainStep, make_optimizer

# encoder level 1 and decoder level 1 only: two block shapes, so compiling stays quick on a CPU
SMALL = ModelConfig(text_dim=16, dim=8, num_blocks=(1, 0, 0, 0), num_refinement_blocks=0, heads=(1, 1, 1, 1))


def losses(compiled: bool, steps: int = 50) -> list[float]:
    torch.manual_seed(0)
    model = TextPromptIR(SMALL)
    if compiled:
        assert compile_blocks(model) == 2
    step = TrainStep(model, make_optimizer(model, 1e-3, 0.01, torch.device("cpu")), torch.device("cpu"), "fp32")
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(steps):
        lq, gt = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
        out.append(step(lq, gt, torch.randn(2, 16, generator=g)))
    return [float(v) for v in out]  # the step returns device tensors: read them only now


def test_compiled_blocks_follow_the_eager_training_curve():
    eager, compiled = losses(False), losses(True)
    assert eager[-1] < eager[0]  # it trains
    assert max(abs(a - b) for a, b in zip(eager, compiled)) < 1e-3


def test_a_nan_loss_stops_the_run_within_the_log_window(tiny_layout, text_ckpt, tmp_path, capsys):
    args = base_args(tiny_layout, text_ckpt, tmp_path, "window") + ["--lr", "1e30", "--warmup_epochs", "0",
                                                                    "--log_every", "4"]
    assert train.main(args) == 2
    err = capsys.readouterr().err
    assert "the loss became nan at epoch 1, step 4;" in err  # checked at step 4, the first log point


def test_cuda_graph_on_a_cpu_trains_without_it(tiny_layout, text_ckpt, tmp_path, capsys):
    args = base_args(tiny_layout, text_ckpt, tmp_path, "graph") + ["--cuda_graph", "--max_steps", "2"]
    assert train.main(args) == 0
    out = capsys.readouterr().out
    assert "note: --cuda_graph needs one CUDA GPU; training without it" in out
    assert torch.load(tmp_path / "ckpt/graph/last.pt", weights_only=True)["step"] == 2


def test_the_psnr_loss_is_minus_the_mean_psnr_of_the_samples():
    from skimage.metrics import peak_signal_noise_ratio

    from utils.train.step import restoration_loss

    g = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 3, 16, 16, generator=g)
    out = (gt + torch.tensor([0.02, 0.2]).view(2, 1, 1, 1) * torch.randn(2, 3, 16, 16, generator=g)).clamp(0, 1)
    psnrs = [peak_signal_noise_ratio(gt[i].numpy(), out[i].numpy(), data_range=1.0) for i in range(2)]
    assert float(restoration_loss(out, gt, "psnr")) == pytest.approx(-sum(psnrs) / 2, abs=1e-3)
    assert float(restoration_loss(out, gt, "l1")) == pytest.approx(float((out - gt).abs().mean()))


def test_a_sample_stops_pulling_at_50_db_and_an_identity_pair_at_35_db_under_the_psnr_loss():
    from utils.train.step import restoration_loss

    g = torch.Generator().manual_seed(0)
    gt = torch.rand(3, 3, 16, 16, generator=g)
    near = gt + 0.01 * torch.randn(3, 3, 16, 16, generator=g)  # about 40 dB from the target
    # sample 0: a degraded pair nearly matched (past 50 dB); 1: an identity pair at 40 dB; 2: a degraded pair at 40 dB
    out = torch.stack([gt[0] + 1e-4, near[1], near[2]]).requires_grad_()
    loss = restoration_loss(out, gt, "psnr", identity=torch.tensor([False, True, False]))
    loss.backward()
    assert float(out.grad[0].abs().max()) == 0.0  # past 50 dB: no pull at all
    assert float(out.grad[1].abs().max()) == 0.0  # an identity pair past 35 dB: no pull
    assert float(out.grad[2].abs().max()) > 0.0  # a degraded pair at 40 dB still pulls
    mse2 = float((near[2] - gt[2]).square().mean())
    expected = (10 * math.log10(1e-5 + 1e-8) + 10 * math.log10(10 ** -3.5 + 1e-8) + 10 * math.log10(mse2 + 1e-8)) / 3
    assert float(loss.detach()) == pytest.approx(expected, abs=1e-3)
    out.grad = None
    restoration_loss(out, gt, "psnr", identity=torch.tensor([False, True, False]), identity_floor_db=45.0).backward()
    assert float(out.grad[1].abs().max()) > 0.0  # with its floor at 45 dB the identity pair at 40 dB pulls


def test_a_training_step_marks_the_pairs_whose_input_is_their_target(monkeypatch):
    import utils.train.step as step

    seen = {}

    def spy(out, gt, kind="l1", identity=None, identity_floor_db=None):
        seen["identity"], seen["floor"] = identity.tolist(), identity_floor_db
        return out.mean()

    monkeypatch.setattr(step, "restoration_loss", spy)
    net = torch.nn.Conv2d(3, 3, 1)
    opt = torch.optim.AdamW(net.parameters())
    train_step = step.TrainStep(torch.nn.Sequential(net), opt, torch.device("cpu"), "fp32", loss="psnr",
                                identity_floor_db=30.0)
    train_step.net = lambda lq, embedding: net(lq)
    gt = torch.rand(2, 3, 8, 8)
    lq = torch.stack([gt[0], gt[1] + 0.1])
    train_step(lq, gt, None)
    assert seen["identity"] == [True, False] and seen["floor"] == 30.0


def test_the_end_of_a_run_reports_steady_state_throughput(tiny_layout, text_ckpt, tmp_path, capsys):
    args = base_args(tiny_layout, text_ckpt, tmp_path, "speed") + ["--max_steps", "3", "--log_every", "1"]
    assert train.main(args) == 0
    out = capsys.readouterr().out
    assert "images/s after the first 1 steps, waiting for data" in out  # the first window is left out
