"""The results files of test.py: ``output/<name>/results.json`` holds every set scored under that
name, with its per-image scores; ``results.csv`` (one row per image) and ``results.md`` (the
tables beside the paper's Table 1, one per protocol) are made from it.

Rows are keyed by the set, the task route (how the network is told the task: ``instruction``, a
sentence per task; ``unconditioned`` for a net without text conditioning) with its instruction, and the
protocol (precision, Y channel, crop): a run of other sets or of another protocol adds rows, and
a row already there is replaced only with ``overwrite``. One file holds the results of one
checkpoint (by the SHA-256 of its network's weights, so that a ``last.pt`` and the release folder
exported from it are one checkpoint; files written before that was recorded hold the SHA-256 of the
checkpoint file, which still identifies it): another checkpoint's replace them only with
``overwrite``. Each row records the versions its scores depend on (torch, scikit-image, numpy,
this project); PSNR is known to move with the scikit-image version.
"""
from __future__ import annotations

import csv
import io
import json
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, Sequence

import numpy
import skimage
import torch

from utils.atomic import write_file, write_text
from utils.digest import file_sha256
from utils.errors import UserError
from utils.file_lock import held
from utils.tables import cell, header, row

FORMAT = "textpromptir-results/2"  # 2: per-image "read_as", what the blind route read each image as
READABLE_FORMATS = ("textpromptir-results/1", FORMAT)  # older files are read and rewritten in this one
JSON, CSV, MARKDOWN = "results.json", "results.csv", "results.md"
LOCK = "results.lock"  # held while a run merges its rows into the three files
PROJECT_VERSION = "0.1.0"  # reported when the code is not a git checkout
KEY_FIELDS = ("task", "label", "route", "instruction", "precision", "y_channel", "crop16")  # a row: a set and how
PROTOCOL_FIELDS = KEY_FIELDS[2:]  # the part of a row's key that a run shares (Protocol)
CSV_FIELDS = ["set", "task", "route", "instruction", "precision", "y_channel", "crop16", "path", "name",
              "psnr", "ssim", "input_psnr", "input_ssim", "read_as"]  # read_as: blind route only, else empty

# TextPromptIR, Table 1 (three-task all-in-one setting), PSNR in dB.
PAPER_PSNR = {
    ("dehaze", "sots", None): 31.65,
    ("derain", "rain100l", None): 38.41,
    ("denoise", "cbsd68", 15): 34.17,
    ("denoise", "cbsd68", 25): 31.52,
    ("denoise", "cbsd68", 50): 28.26,
}
PAPER_AVERAGE = 32.80
PAPER_COLUMNS = [("dehaze", "sots", None, "SOTS"), ("derain", "rain100l", None, "Rain100L"),
                 ("denoise", "cbsd68", 15, "CBSD68 σ=15"), ("denoise", "cbsd68", 25, "CBSD68 σ=25"),
                 ("denoise", "cbsd68", 50, "CBSD68 σ=50")]

# The five-task all-in-one setting (after IDR, CVPR 2023): SOTS outdoor, Rain100L, CBSD68 at σ=25, GoPro,
# LOL-v1, scored on RGB after the centre crop to a multiple of 16 (AdaIR utils/val_utils.py, MoCE-IR
# src/test.py; as our three tasks). (task, set, sigma, header) per column.
FIVE_TASK_COLUMNS = [("dehaze", "sots", None, "SOTS"), ("derain", "rain100l", None, "Rain100L"),
                     ("denoise", "cbsd68", 25, "BSD68 σ=25"), ("deblur", "gopro", None, "GoPro"),
                     ("lowlight", "lol", None, "LOL-v1")]
# Published (PSNR, SSIM) per column, then the average, each row from the method's own paper's table.
FIVE_TASK_PUBLISHED = {
    # BaryIR (TPAMI 2026), Table 2, PromptIR-backbone row (xl-tang3/BaryIR figs/5Dquant.png); its released
    # weights are the Restormer-backbone ones, whose row averages 30.72 / 0.919
    "BaryIR (PromptIR backbone)": [(31.68, 0.980), (38.36, 0.984), (31.49, 0.894), (29.84, 0.895), (23.88, 0.862),
                                   (31.05, 0.923)],
    # MoCE-IR (CVPR 2025), Table 2 (eduardzamfir/MoCE-IR assets/results_aio_5.png)
    "MoCE-IR": [(30.48, 0.974), (38.04, 0.982), (31.34, 0.887), (30.05, 0.899), (23.00, 0.852), (30.58, 0.919)],
    # AdaIR (ICLR 2025), five-degradation table (c-yn/AdaIR figs/adair5d.PNG)
    "AdaIR": [(30.53, 0.978), (38.02, 0.981), (31.35, 0.889), (28.12, 0.858), (23.00, 0.845), (30.20, 0.910)],
    # InstructIR-5D (ECCV 2024), Table 2 (mv-lab/InstructIR static/tables/table1.png)
    "InstructIR-5D": [(27.10, 0.956), (36.84, 0.973), (31.40, 0.887), (29.40, 0.886), (23.00, 0.836),
                      (29.55, 0.907)],
}
FIVE_TASKS = ("dehaze", "derain", "denoise", "deblur", "lowlight")  # the columns' order
FIVE_TASK_DEMO_SIGMA = 25  # the denoising column of the five-task table, on any set


@dataclass(frozen=True)
class Protocol:
    """How a set was scored, apart from the set itself: the part of a row's key a run shares."""

    route: str  # "instruction"; "blind" (each image read by the classifier); "unconditioned" (no text conditioning)
    instruction: str | None  # None: each task's default instruction (or none, for "unconditioned")
    precision: str  # what the network computed in: "bf16" or "fp32"
    y_channel: bool
    crop16: bool

    def describe(self) -> str:
        told = ("no instruction" if self.route == "unconditioned" else
                "the tasks each image was read as, each with its default instruction" if self.route == "blind" else
                "each task's default instruction" if self.instruction is None else f"instruction {self.instruction!r}")
        return (f"{self.route} route ({told}), {self.precision}, {'Y channel' if self.y_channel else 'RGB'}, "
                f"{'centre crop to a multiple of 16' if self.crop16 else 'no crop'}")


def paper_psnr(summary: dict) -> float | None:
    return PAPER_PSNR.get((summary["task"], summary["name"].lower(), summary["sigma"]))


def markdown_tables(summaries: list[dict]) -> str:
    """Per-set table (ours vs degraded input vs paper) and the paper's Table 1 row format."""
    lines = header(["Set", "Task", "Images", "Input PSNR / SSIM", "Ours PSNR / SSIM", "Gain (dB)", "Paper PSNR"], 2)
    for summary in summaries:
        lines.append(row([summary["label"], summary["task"], str(summary["n"]),
                          f"{cell(summary['input_psnr'])} / {cell(summary['input_ssim'], '.3f')}",
                          f"{cell(summary['psnr'])} / {cell(summary['ssim'], '.3f')}",
                          f"{summary['psnr'] - summary['input_psnr']:+.2f}", cell(paper_psnr(summary))]))
    by_key = {(summary["task"], summary["name"].lower(), summary["sigma"]): summary for summary in summaries}
    if any(k[:3] in by_key for k in PAPER_COLUMNS):
        ours = [by_key.get(k[:3], {}).get("psnr") for k in PAPER_COLUMNS]
        average = sum(ours) / len(ours) if all(v is not None for v in ours) else None
        lines += [""] + header(["Method", *(c[3] for c in PAPER_COLUMNS), "Average"])
        lines.append(row(["TextPromptIR (paper)", *(cell(PAPER_PSNR[c[:3]]) for c in PAPER_COLUMNS),
                          cell(PAPER_AVERAGE)]))
        lines.append(row(["ours", *(cell(v) for v in ours), cell(average)]))
    five = five_task_table(summaries)
    if five:
        lines += [""] + five
    return "\n".join(lines)


def _pair(value: tuple[float, float] | None) -> str:
    return "—" if value is None else f"{cell(value[0])} / {cell(value[1], '.3f')}"


def five_task_table(summaries: list[dict]) -> list[str]:
    """The five-task table (SOTS, Rain100L, BSD68 σ=25, GoPro, LOL-v1, average) when a deblur or
    lowlight set was scored. On the real benchmark sets the published rows (``FIVE_TASK_PUBLISHED``)
    are printed beside ours; on any other sets (the demo's) only ours and the degraded input are,
    under the sets' own names, never beside the published numbers."""
    if not any(s["task"] in ("deblur", "lowlight") for s in summaries):
        return []
    by_key = {(s["task"], s["name"].lower(), s["sigma"]): s for s in summaries}
    real = [by_key.get(c[:3]) for c in FIVE_TASK_COLUMNS]
    if any(s is not None for s in real):
        chosen, heads = real, [c[3] for c in FIVE_TASK_COLUMNS]
    else:  # no benchmark set: each task's first set scored (denoising at σ=25)
        chosen = [next((s for s in summaries if s["task"] == task
                        and (task != "denoise" or s["sigma"] == FIVE_TASK_DEMO_SIGMA)), None) for task in FIVE_TASKS]
        heads = [f"{s['label']} ({s['task']})" if s else task for s, task in zip(chosen, FIVE_TASKS)]

    def scores(prefix: str) -> list[tuple[float, float] | None]:
        values = [None if s is None else (s[f"{prefix}psnr"], s[f"{prefix}ssim"]) for s in chosen]
        known = [v for v in values if v is not None]
        average = None if len(known) < len(values) else tuple(sum(v[i] for v in known) / len(known) for i in (0, 1))
        return values + [average]

    lines = header(["Method", *heads, "Average"])
    if any(s is not None for s in real):
        lines += [row([f"{name} (published)", *(_pair(v) for v in values)])
                  for name, values in FIVE_TASK_PUBLISHED.items()]
    else:
        lines.append(row(["degraded input", *(_pair(v) for v in scores("input_"))]))
    lines.append(row(["ours", *(_pair(v) for v in scores(""))]))
    return ["Five-task setting, PSNR / SSIM" + ("" if any(s is not None for s in real) else
            " (demo sets: not comparable to published numbers, so none are shown)")] + [""] + lines


def project_version() -> str:
    """``git <commit>`` (``-dirty`` with uncommitted changes) of this checkout, else PROJECT_VERSION."""
    root = Path(__file__).resolve().parents[2]
    if (root / ".git").exists():
        try:
            done = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=40"],
                                  capture_output=True, text=True, timeout=20)
            if done.returncode == 0 and done.stdout.strip():
                return f"git {done.stdout.strip()}"
        except (OSError, subprocess.SubprocessError):
            pass
    return PROJECT_VERSION


def versions() -> dict[str, str]:
    """The versions a score depends on."""
    return {"torch": torch.__version__, "scikit_image": skimage.__version__, "numpy": numpy.__version__,
            "project": project_version()}


def same_checkpoint(recorded: dict, ckpt_path: str | Path, identity: str) -> bool:
    """True when a results file's ``checkpoint`` record is of the checkpoint at ``ckpt_path`` whose
    weights have the SHA-256 ``identity``: by that SHA-256, or, in files written before it was
    recorded, by the SHA-256 of the checkpoint file."""
    if recorded.get("weights_sha256"):
        return recorded["weights_sha256"] == identity
    return bool(recorded.get("sha256")) and Path(ckpt_path).is_file() and recorded["sha256"] == file_sha256(ckpt_path)


def _key(entry: dict) -> tuple:
    return tuple(entry.get(k) for k in KEY_FIELDS)


def stored_rows(path: Path, ckpt_path: str | Path, identity: str) -> tuple[list[dict] | None, str | None]:
    """The rows of the results file ``path`` when they are of the checkpoint at ``ckpt_path`` whose
    weights have the SHA-256 ``identity`` (none when the file is missing), else None and what is
    wrong with the file."""
    if not path.exists():
        return [], None
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return None, f"cannot be read ({type(e).__name__})"
    if not isinstance(stored, dict) or stored.get("format") not in READABLE_FORMATS:
        return None, "written by another version of test.py, so its rows cannot be merged"
    old = stored.get("checkpoint") or {}
    if not same_checkpoint(old, ckpt_path, identity):
        shown = old.get("weights_sha256") or old.get("sha256") or "?"
        return None, f"holds the results of another checkpoint ({old.get('path')}, sha256 {shown[:12]})"
    return list(stored.get("sets") or []), None


def _with(rows: list[dict], new: list[dict]) -> list[dict]:
    """``rows`` with each of ``new`` in place of the row of the same key, or added at the end."""
    out = list(rows)
    for entry in new:
        keys = [_key(s) for s in out]
        if _key(entry) in keys:
            out[keys.index(_key(entry))] = entry
        else:
            out.append(entry)
    return out


class Results:
    """The rows of ``<out_dir>/results.json`` and the checkpoint they are of. Every write merges this
    run's rows into the file as it is then, under a lock: two runs under one ``--name`` at once each
    keep their rows."""

    def __init__(self, out_dir: Path, checkpoint: dict[str, str], sets: list[dict], overwrite: bool = False) -> None:
        self.out_dir, self.checkpoint, self.sets, self.overwrite = Path(out_dir), checkpoint, sets, overwrite
        self._versions: dict[str, str] | None = None
        self._mine: dict[tuple, dict] = {}  # the rows this run scored, by key
        self._written: set[tuple] = set()  # the keys of the rows this run has written

    @property
    def json_path(self) -> Path:
        return self.out_dir / JSON

    @classmethod
    def open(cls, out_dir: Path, ckpt_path: str | Path, overwrite: bool, identity: str) -> Results:
        """The results already in ``out_dir``, to be merged into by a run of ``ckpt_path``, whose
        network weights have the SHA-256 ``identity`` (``utils.digest.weights_sha256``). A
        UserError, unless ``overwrite`` (which then starts afresh), when they are of another
        checkpoint or cannot be read as this version's results."""
        out_dir = Path(out_dir)
        checkpoint = {"path": str(ckpt_path), "weights_sha256": identity}
        if Path(ckpt_path).is_file():
            checkpoint["sha256"] = file_sha256(ckpt_path)
        path = out_dir / JSON
        fix = "pass another --name, or --overwrite to replace them"
        if not path.exists():
            views = [out_dir / name for name in (CSV, MARKDOWN) if (out_dir / name).exists()]
            if views and not overwrite:
                raise UserError(f"{views[0]}: results written without their {JSON}, so nothing can be added to "
                                f"them; {fix}")
        rows, problem = stored_rows(path, ckpt_path, identity)
        if problem is not None and not overwrite:
            raise UserError(f"{path}: {problem}; {fix}")
        return cls(out_dir, checkpoint, rows or [], overwrite)

    def refuse_replacing(self, sets: Sequence[tuple[str, str]], protocol: Protocol) -> None:
        """A UserError when a row for one of ``sets`` ((task, label) pairs) under ``protocol`` is already there."""
        fields = asdict(protocol)
        taken = {_key(s) for s in self.sets}
        there = [label for task, label in sets if _key({"task": task, "label": label, **fields}) in taken]
        if there:
            more = f" and {len(there) - 1} more sets" if len(there) > 1 else ""
            raise UserError(f"{self.json_path}: already holds {there[0]}{more} scored the same way "
                            f"({protocol.describe()}); pass --overwrite to replace {'them' if more else 'it'}, "
                            "or another --name")

    def put(self, summary: dict, images: list[dict], protocol: Protocol, test_root: str | Path) -> None:
        """Add one scored set (``SetScore.summary()`` and its per-image scores), replacing the row of
        the same key."""
        if self._versions is None:
            self._versions = versions()
        entry = {**summary, "paper_psnr": paper_psnr(summary), **asdict(protocol), "test_root": str(test_root),
                 "versions": self._versions, "images": images}
        self._mine[_key(entry)] = entry
        self.sets = _with(self.sets, [entry])

    def _merged(self) -> list[dict]:
        """The rows of the results file as it is now, with this run's put in (under the lock)."""
        rows, problem = stored_rows(self.json_path, self.checkpoint["path"], self.checkpoint["weights_sha256"])
        again = "another run wrote it while this one ran; pass another --name"
        if problem is not None and not self.overwrite:
            raise UserError(f"{self.json_path}: {problem} ({again})")
        rows = rows or []
        theirs = [s["label"] for s in rows if _key(s) in self._mine and _key(s) not in self._written]
        if theirs and not self.overwrite:
            raise UserError(f"{self.json_path}: {theirs[0]} was scored the same way by another run while this one "
                            "ran; its scores are kept; pass --overwrite to replace them, or another --name")
        return _with(rows, list(self._mine.values()))

    def write(self) -> str:
        """Merge this run's rows into the results on disk and write the three files, each whole (a
        temporary file renamed into place), under a lock on the folder; returns the markdown tables."""
        with held(self.out_dir / LOCK, "results"):
            self.sets = self._merged()
            write_text(self.json_path, json.dumps({"format": FORMAT, "checkpoint": self.checkpoint,
                                                   "sets": self.sets}, indent=2) + "\n", replace=True)
            write_file(self.out_dir / CSV, self._write_csv, replace=True)
            tables = self.markdown()
            write_text(self.out_dir / MARKDOWN, tables + "\n", replace=True, errors="backslashreplace")
            self._written |= set(self._mine)
        return tables

    def _write_csv(self, binary: BinaryIO) -> None:
        f = io.TextIOWrapper(binary, encoding="utf-8", errors="surrogateescape", newline="")  # a non-UTF-8 name is written as its own bytes
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, restval="")
        writer.writeheader()
        for s in self.sets:
            for image in s["images"]:
                writer.writerow({"set": s["label"], "task": s["task"], **{k: s[k] for k in PROTOCOL_FIELDS}, **image})
        f.flush()
        f.detach()  # the caller flushes and closes the file

    def markdown(self) -> str:
        """One section per protocol, in the order the rows were first written."""
        groups: dict[tuple, list[dict]] = {}
        for s in self.sets:
            groups.setdefault(_key(s)[2:], []).append(s)
        sections = []
        for fields, sets in groups.items():
            protocol = Protocol(**dict(zip(PROTOCOL_FIELDS, fields)))
            sections.append(f"**{protocol.describe()}**\n\n{markdown_tables(sets)}")
        if self.checkpoint.get("weights_sha256"):
            which = f"weights sha256 {self.checkpoint['weights_sha256'][:12]}"
        else:  # written before the weights' SHA-256 was recorded
            which = f"sha256 {self.checkpoint['sha256'][:12]}"
        return f"Checkpoint {self.checkpoint['path']} ({which})\n\n" + "\n\n".join(sections)
