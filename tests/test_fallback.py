"""The GPU default fails safe, tested on a CPU with ``--compile``: a compile that raises at the first
step, a capture that fails, and a compiled step whose loss turns NaN each leave a run that trains on
eagerly, says so in one line naming --eager, and records what trained in the checkpoint."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch._inductor.compile_fx

import train
from tests.test_train import base_args, weights
from utils.train import fallback, step
from utils.train.speed import speed_settings
from utils.train.step import TrainStep

TRITON_MISSING = "Cannot find a working triton installation"


def traced_only(gm, example_inputs, **kwargs):
    """Stands in for inductor: dynamo traces the blocks, and the graph runs as traced (no compile)."""
    return gm.forward


def no_triton(gm, example_inputs, **kwargs):
    raise RuntimeError(f"{TRITON_MISSING}. More information on installing Triton can be found at ...")


def compiled(model) -> bool:
    return any(b._compiled_call_impl is not None for b in model.transformer_blocks())


def nan_when_compiled(monkeypatch, from_call: int) -> list[int]:
    """Compiled steps from the ``from_call``-th on return NaN and leave NaN weights; eager steps are
    untouched. Returns the count of compiled steps, as it grows."""
    calls = [0]
    plain = TrainStep.loss_and_update

    def step_fn(self, lq, gt, text, autocast_cache=True):
        loss = plain(self, lq, gt, text, autocast_cache)
        if not compiled(self.net):
            return loss
        calls[0] += 1
        if calls[0] < from_call:
            return loss
        with torch.no_grad():
            self.params[0].fill_(float("nan"))
        return loss * float("nan")

    monkeypatch.setattr(TrainStep, "loss_and_update", step_fn)
    return calls


def run(tiny_layout, text_ckpt, tmp_path, name: str, *extra: str) -> int:
    return train.main(base_args(tiny_layout, text_ckpt, tmp_path, name) + ["--max_steps", "4", "--log_every", "2",
                                                                           *extra])


@pytest.fixture(scope="module")
def eager_run(tiny_layout, text_ckpt, tmp_path_factory) -> Path:
    """The checkpoint of the same run with eager blocks throughout."""
    tmp = tmp_path_factory.mktemp("eager")
    assert run(tiny_layout, text_ckpt, tmp, "eager") == 0
    return tmp / "ckpt/eager/last.pt"


@pytest.fixture(scope="module")
def eager_weights(eager_run) -> dict:
    return weights(eager_run)


def test_a_checkpoint_records_the_configuration_that_trained_it(eager_run):
    assert torch.load(eager_run, weights_only=True)["speed"] == dict(
        compiled_blocks=False, cuda_graph=False, precision="fp32", processes=1,
        why=dict(compile="on a CPU only with --compile", cuda_graph="needs a CUDA GPU",
                 precision="auto: fp32 on a CPU"))


def test_a_compile_that_fails_at_the_first_step_trains_with_eager_blocks(tiny_layout, text_ckpt, tmp_path, capsys,
                                                                       monkeypatch, eager_weights):
    monkeypatch.setattr(torch._inductor.compile_fx, "compile_fx", no_triton)
    assert run(tiny_layout, text_ckpt, tmp_path, "fails", "--compile") == 0
    out, err = capsys.readouterr()
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert notes == [f"note: torch.compile failed at the first step (backend='inductor' raised: RuntimeError: "
                     f"{TRITON_MISSING}. More information on installing Triton can be found at ...); training with "
                     "eager blocks (--eager skips compiling)"]
    assert "(compile included); training with eager blocks (torch.compile failed at the first step)" in out
    ckpt = torch.load(tmp_path / "ckpt/fails/last.pt", weights_only=True)
    assert ckpt["speed"]["compiled_blocks"] is False and ckpt["step"] == 4
    assert ckpt["speed"]["why"]["compile"] == "torch.compile failed at the first step"
    for k, v in ckpt["model"].items():  # the failed attempt left nothing behind
        torch.testing.assert_close(v, eager_weights[k], atol=1e-6, rtol=0, msg=k)


def test_a_compiled_window_that_turns_nan_is_trained_again_eagerly(tiny_layout, text_ckpt, tmp_path, capsys,
                                                                   monkeypatch, eager_weights):
    monkeypatch.setattr(torch._inductor.compile_fx, "compile_fx", traced_only)
    calls = nan_when_compiled(monkeypatch, from_call=3)  # steps 1-2 fine, NaN from step 3: the second window
    assert run(tiny_layout, text_ckpt, tmp_path, "nan", "--compile") == 0
    out, err = capsys.readouterr()
    assert calls[0] == 4  # steps 3 and 4 ran compiled once, then never again
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert notes == ["note: the loss became nan with compiled blocks in steps 3-4; training them again with eager "
                     "blocks, and eagerly from now on (--eager skips compiling)"]
    assert "training with compiled blocks (--compile)" in out  # the first-step line: compiled then
    ckpt = torch.load(tmp_path / "ckpt/nan/last.pt", weights_only=True)
    assert ckpt["step"] == 4 and ckpt["batches_done_in_epoch"] == 4
    assert ckpt["speed"]["compiled_blocks"] is False
    assert ckpt["speed"]["why"]["compile"] == "the compiled run's loss became NaN/inf"
    for k, v in ckpt["model"].items():  # steps 1-2 compiled and 3-4 again eagerly: the eager run's weights
        torch.testing.assert_close(v, eager_weights[k], atol=1e-5, rtol=0, msg=k)


def test_a_window_nan_also_eagerly_stops_the_run_after_one_try(tiny_layout, text_ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch._inductor.compile_fx, "compile_fx", traced_only)
    args = base_args(tiny_layout, text_ckpt, tmp_path, "nan") + ["--compile", "--lr", "1e30", "--warmup_epochs", "0",
                                                                 "--log_every", "4"]
    assert train.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("training them again with eager blocks") == 1
    assert "the loss became nan at epoch 1, step 4;" in err  # the eager re-run stops as an eager run does
    assert not (tmp_path / "ckpt/nan/last.pt").exists()


def test_a_failed_capture_trains_without_the_graph_and_names_eager(monkeypatch, capsys):
    """A CUDA-graph capture that fails (a CPU stands in for the GPU: the capture is made to fail)."""
    def refuse(*args):
        raise step.CaptureFailed("operation not permitted when stream is capturing")

    monkeypatch.setattr(step, "CudaGraphStep", refuse)
    model, plain, batch = tiny_step()
    settings = speed_settings(torch.device("cpu"), 1)
    settings = type(settings)(False, True, "fp32", 1, {**settings.why, "cuda_graph": "--cuda_graph"})
    step_fn, loss, used = fallback.first_step(plain, settings, model, *batch, restore=lambda: None)
    assert step_fn is plain and torch.isfinite(loss)
    assert not used.cuda_graph and used.why["cuda_graph"] == "its capture failed"
    assert capsys.readouterr().err == ("note: CUDA graph capture failed (operation not permitted when stream is "
                                       "capturing); training without it (--eager skips compiling and the capture)\n")


def test_a_compile_that_fails_in_the_capture_warm_up_keeps_the_graph_with_eager_blocks(monkeypatch, capsys):
    """The compile fails inside the graph's warm-up steps: the blocks turn eager and the capture is
    tried again; the note names the compile, not the capture."""
    captured = []

    def graph(plain, lq, gt, text):
        if compiled(plain.net):
            raise RuntimeError("backend='inductor' raised:\nInductorError: LoweringException")
        captured.append(plain)
        return lambda lq, gt, text: plain(lq, gt, text)  # stands in for the captured step

    monkeypatch.setattr(step, "CudaGraphStep", graph)
    model, plain, batch = tiny_step()
    model.transformer_blocks()[0].compile()  # never called: the stand-in refuses compiled blocks
    settings = speed_settings(torch.device("cpu"), 1, compile_requested=True)
    settings = type(settings)(True, True, "fp32", 1, {**settings.why, "cuda_graph": "--cuda_graph"})
    restored = []
    _, loss, used = fallback.first_step(plain, settings, model, *batch, restore=lambda: restored.append(1))
    assert captured and restored and torch.isfinite(loss) and not compiled(model)
    assert not used.compile and used.cuda_graph
    assert capsys.readouterr().err.splitlines() == [
        "note: torch.compile failed at the first step (backend='inductor' raised: InductorError: LoweringException); "
        "training with eager blocks (--eager skips compiling)"]


def test_an_error_of_the_eager_step_passes_through(monkeypatch):
    model, plain, batch = tiny_step()
    monkeypatch.setattr(TrainStep, "loss_and_update", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        fallback.first_step(plain, speed_settings(torch.device("cpu"), 1), model, *batch, restore=lambda: None)


def test_a_snapshot_puts_weights_optimizer_and_schedule_back():
    from utils.train.schedulers import warmup_cosine

    model, plain, batch = tiny_step()
    scheduler = warmup_cosine(plain.optimizer, 2, 10)
    snap = fallback.Snapshot()
    snap.take(model, plain, scheduler, at_step=0)  # before the optimizer made its state
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for at in range(3):
        if at == 1:
            snap.take(model, plain, scheduler, at_step=1)
            middle = ({k: v.clone() for k, v in model.state_dict().items()},
                      {k: v.clone() for k, v in plain.optimizer.state[plain.params[0]].items()},
                      plain.optimizer.param_groups[0]["lr"], scheduler.last_epoch)
        plain(*batch)
        scheduler.step()
    assert snap.restore(model, plain, scheduler) == 1
    for k, v in model.state_dict().items():
        assert torch.equal(v, middle[0][k]), k
    state = plain.optimizer.state[plain.params[0]]
    assert all(torch.equal(state[k], v) for k, v in middle[1].items())
    assert plain.optimizer.param_groups[0]["lr"] == middle[2] and scheduler.last_epoch == middle[3]
    first = fallback.Snapshot()
    first.take(model, plain, scheduler, at_step=0)
    plain.optimizer.state.clear()  # as before the first step
    first.take(model, plain, scheduler, at_step=0)
    plain(*batch)
    first.restore(model, plain, scheduler)
    assert not plain.optimizer.state  # state made after the snapshot is dropped
    assert before.keys() == model.state_dict().keys()


def tiny_step():
    from net.model import ModelConfig, TextPromptIR
    from utils.train.step import make_optimizer

    torch.manual_seed(0)
    model = TextPromptIR(ModelConfig(text_dim=16, dim=8, num_blocks=(1, 0, 0, 0), num_refinement_blocks=0,
                                     heads=(1, 1, 1, 1)))
    cpu = torch.device("cpu")
    plain = TrainStep(model, make_optimizer(model, 1e-3, 0.01, cpu), cpu, "fp32")
    g = torch.Generator().manual_seed(1)
    batch = (torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 16, 16, generator=g),
             torch.randn(2, 16, generator=g))
    return model, plain, batch


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test compiles anew: dynamo's caches hold code compiled under another test's stand-in."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()
