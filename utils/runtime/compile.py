"""Where ``torch.compile`` keeps what it compiled, so that a resumed run, a second run of the same
config or another process of the same run loads its graphs instead of compiling them again; and
how long compiling took.

Inductor keeps three caches under ``TORCHINDUCTOR_CACHE_DIR`` (read at every compile): the
generated kernels (C++ on a CPU, Triton on a GPU, under ``triton/``), the FX graph cache
(``fxgraph/``, each compiled graph) and the AOT autograd cache (``aotautograd/``, forward and
backward together). Their keys are the graph, the input shapes and dtypes, and torch's version
and settings, so runs of different configs share one folder safely.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import torch
import torch.nn as nn

from utils.errors import UserError

COMPILE_RECOMPILE_LIMIT = 64  # graphs per block class: one per (width, heads, size, train/eval)
CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"
FOLDER_NAME = "compile_cache"


def compile_blocks(model: nn.Module) -> int:
    """``torch.compile`` every transformer block in place (state_dict keys unchanged). Blocks of the
    same width, heads and input size share one compiled graph, so the paper network compiles
    five forward/backward graphs, not 44. Returns the number of blocks wrapped."""
    import torch._dynamo  # heavy: loaded only when blocks are compiled

    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, COMPILE_RECOMPILE_LIMIT)
    blocks = model.transformer_blocks()
    for block in blocks:
        block.compile(dynamic=False)
    return len(blocks)


def uncompile_blocks(model: nn.Module) -> None:
    """Undo ``compile_blocks`` for good: every block runs its eager code from now on, and a compile
    that failed is not tried again (``nn.Module.compile`` keeps the compiled call in
    ``_compiled_call_impl``; None is the module's uncompiled state)."""
    for block in model.transformer_blocks():
        block._compiled_call_impl = None


def eager_blocks() -> contextlib.AbstractContextManager:
    """Inside this context compiled blocks run their plain eager code: no compile, no recompile
    (a forward in another grad mode or at another size would otherwise compile new graphs)."""
    return torch.compiler.set_stance("force_eager")


def default_compile_cache(beside: str | Path) -> Path:
    """``$TORCHINDUCTOR_CACHE_DIR`` when the user set it, else ``<beside>/compile_cache``."""
    return Path(os.environ[CACHE_ENV]) if os.environ.get(CACHE_ENV) else Path(beside) / FOLDER_NAME


def use_compile_cache(folder: str | Path, option: str) -> Path:
    """Make ``folder`` the compile cache of this process (and of the processes it starts), after
    proving a file can be written there; a UserError naming ``option`` otherwise. Returns the
    absolute folder."""
    folder = Path(folder).expanduser().resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UserError(f"{folder}: cannot keep the compile cache there ({e.strerror or e}); "
                        f"pass another {option}") from None
    os.environ[CACHE_ENV] = str(folder)
    # torch's compiler stack is heavy: loaded only when a compile cache is used
    import torch._functorch.config
    import torch._inductor.config

    torch._inductor.config.fx_graph_cache = True
    torch._functorch.config.enable_autograd_cache = True
    return folder


def compile_stats() -> dict[str, float | int] | None:
    """What ``torch.compile`` did in this process so far: ``seconds`` spent compiling (forward
    graphs, and backward graphs, which compile at their first backward), ``graphs`` compiled or
    loaded by inductor and ``from_cache`` of them loaded from the cache. None if this torch does
    not keep these counters."""
    try:
        from torch._dynamo.utils import compilation_time_metrics, counters  # heavy: only with compiled blocks
    except ImportError:
        return None
    seconds = sum(sum(compilation_time_metrics.get(key, ())) for key in
                  ("_compile.compile_inner", "compile_fx.<locals>.bw_compiler"))
    inductor = counters["inductor"]
    hits = int(inductor.get("fxgraph_cache_hit", 0))
    graphs = hits + int(inductor.get("fxgraph_cache_miss", 0)) + int(inductor.get("fxgraph_cache_bypass", 0))
    return dict(seconds=float(seconds), graphs=graphs, from_cache=hits)


def compile_line(cache: Path | None) -> str | None:
    """One log line on the compile so far (None if nothing compiled or torch keeps no counters)."""
    stats = compile_stats()
    if not stats or not stats["graphs"]:
        return None
    where = f" ({cache})" if cache is not None else ""
    return (f"torch.compile: {stats['seconds']:.1f} s for {stats['graphs']} graphs, "
            f"{stats['from_cache']} of them loaded from the cache{where}")
