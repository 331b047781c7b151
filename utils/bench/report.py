"""bench.py's results as markdown tables: inference, training, data pipeline, checks."""
from __future__ import annotations

import json
from typing import Any

from utils.tables import cell, header, row


def markdown_tables(result: dict[str, Any]) -> str:
    """The results as markdown: inference, training, data pipeline."""
    impls = result["impls"]
    baselines = [i for i in impls if i != "fast"] if "fast" in impls else []

    def ratio(fast: float | None, base: float | None) -> str:
        return f"{fast / base:.2f}x" if fast and base else "n/a"

    lines = ["malloc: " + ", ".join(f"{k} {v}" for k, v in result.get("allocators", {}).items()), ""]
    if result["inference"]:
        names = ["size (HxW)", *(n for i in impls for n in (f"{i} ms", f"{i} peak MB")), *(f"fast / {b}" for b in baselines)]
        lines += header(names)
        for size in result["sizes"]:
            cells, latency = [f"{size[0]}x{size[1]}"], {}
            for impl in impls:
                r = next(x for x in result["inference"] if x["impl"] == impl and x["size"] == size)
                latency[impl] = r.get("latency_ms")
                cells += [cell(r.get("latency_ms"), ".1f") if "error" not in r else f"error: {r['error']}",
                          cell(r.get("peak_mb"), ".0f", "n/a")]
            lines.append(row(cells + [ratio(latency["fast"], latency[b]) for b in baselines]))
        lines.append("")
    if result["train"]:
        lines += header(["training", "images/s", "step s", "peak MB", "first steps s"])
        for r in result["train"]:
            label = f"{r['impl']}, {r['batch']}x{r['size']}^2" + (", CUDA graph" if r.get("cuda_graph") else "")
            if "error" in r:
                lines.append(row([label, f"error: {r['error']}", "", "", ""]))
            else:
                lines.append(row([label, f"{r['images_per_s']:.2f}", f"{r['step_s']:.3f}", cell(r["peak_mb"], ".0f", "n/a"),
                                  cell(r.get("warmup_s"), ".1f")]))
        lines.append("")
    if result.get("data"):
        lines += header(["DataLoader workers", "crops/s", "crops/s per worker", "images in memory"])
        for r in result["data"]:
            if "error" in r:
                lines.append(row(["?", f"error: {r['error']}", "", ""]))
            else:
                lines.append(row([str(r["workers"]), f"{r['crops_per_s']:.1f}", f"{r['crops_per_s_per_worker']:.1f}",
                                  str(r["cached_images"])]))
        lines.append("")
    if result.get("flops") and "error" not in result["flops"]:
        lines.append("forward GFLOPs per 128x128 image: " + ", ".join(f"{v:.1f} ({k})" for k, v in result["flops"].items()))
    if result.get("official_parity"):
        p = result["official_parity"]
        lines.append("largest |ours - official| with the same weights (fp32, 2x3x64x96): "
                     + ", ".join(f"{v:.1e} ({k.split('_')[0]})" for k, v in p.items() if k != "error")
                     + (f"error: {p['error']}" if "error" in p else ""))
    for key in ("check", "profile"):
        if result.get(key):
            shown = {k: v for k, v in result[key].items() if k not in ("kernels", "table")}
            lines.append(f"{key}: {json.dumps(shown, indent=1)}")
            if result[key].get("table"):
                lines.append(result[key]["table"])
    return "\n".join(lines)
