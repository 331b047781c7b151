"""What each pass of a compound request is conditioned on, measured: its own part of the sentence
(``task_clauses``) or the task's default instruction, on the composite test sets.

    python -m utils.eval.compound_steps --ckpt ckpt/demo/last.pt --test_root data/demo/test \\
        --sentences data/instructions/compound_heldout.tsv

For each composite set (``test/composite/<tasks>/``), every held-out request for exactly its tasks is
planned as demo.py plans it, once per choice, and the set is restored and scored (PSNR, RGB, the
test protocol's crop). Prints one line per set and choice, and the mean over sets.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from utils.cli import cli_main
from utils.errors import UserError
from utils.eval.benchmarks import find_test_sets
from utils.metrics import psnr_ssim
from utils.runtime.engine import Restorer
from utils.tasks import COMPOSITE, join_tasks
from utils.text.bank import read_instruction_tsv


def measure(ckpt: str, test_root: str, sentences: str, per_set: int = 5) -> dict[str, dict[str, float]]:
    """{set label: {"clause": mean PSNR, "default": mean PSNR, "requests": n}} over the requests
    (at most ``per_set``) whose task set is the composite set's, each request read by the encoder."""
    sets, _ = find_test_sets(test_root, COMPOSITE)
    if not sets:
        raise UserError(f"{test_root}: no composite sets (composite/<task+task>/{{input,target}}); build the demo "
                        "set with python -m utils.data.demo_data")
    rows = read_instruction_tsv(sentences)
    restorer = Restorer(ckpt, "cpu", precision="fp32", tile=0)
    out: dict[str, dict[str, float]] = {}
    for test_set in sets:
        requests = [text for text, tasks in rows if tasks == join_tasks(test_set.tasks)][:per_set]
        scores: dict[str, list[float]] = {"clause": [], "default": []}
        for text in requests:
            for choice in scores:
                restorer.step_text = choice
                try:
                    plan = restorer.plan(text)
                except UserError:
                    continue  # a request the encoder refuses or misreads is no test of the conditioning
                if {s.task for s in plan.steps} != set(test_set.tasks):
                    continue
                for i in range(len(test_set)):
                    item = test_set[i]
                    lq = item["lq"].permute(1, 2, 0).numpy()  # (H, W, 3)
                    gt = item["gt"].permute(1, 2, 0).numpy()
                    scores[choice].append(psnr_ssim(restorer.restore(lq, plan).rgb, gt)[0])
        out[test_set.label] = {k: float(np.mean(v)) if v else float("nan") for k, v in scores.items()}
        out[test_set.label]["requests"] = len(requests)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m utils.eval.compound_steps", description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--test_root", required=True)
    p.add_argument("--sentences", default="data/instructions/compound_heldout.tsv")
    p.add_argument("--per_set", type=int, default=5)

    def run(args: Sequence[str] | None) -> int:
        a = p.parse_args(args)
        result = measure(a.ckpt, a.test_root, a.sentences, a.per_set)
        for label, r in result.items():
            print(f"{label}: clause {r['clause']:.2f} dB, default {r['default']:.2f} dB ({r['requests']:.0f} requests)")
        for choice in ("clause", "default"):
            print(f"mean over sets, {choice}: {np.nanmean([r[choice] for r in result.values()]):.2f} dB")
        return 0

    return cli_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
