"""What machine a measurement ran on: CPU, GPU, library versions, threads and load."""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what the platform module says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str, threads: int = 0) -> dict[str, Any]:
    """The record stored beside every benchmark result; on CUDA also the GPU, its memory and
    compute capability."""
    info: dict[str, Any] = dict(cpu=cpu_name(), cpu_count=os.cpu_count(), torch=torch.__version__,
                                python=platform.python_version(),
                                torch_threads=threads or torch.get_num_threads())
    if device == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, cuda=torch.version.cuda, memory_gb=round(props.total_memory / 1e9, 1),
                    capability=f"{props.major}.{props.minor}")
    try:
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    return info
