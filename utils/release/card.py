"""The model card (``README.md``) of a release folder: what it restores, how it was trained, its
results with their protocol lines (from a results file of this very checkpoint), its limitations,
the citation and how to load it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from utils.eval.results import Results
from utils.tasks import TASK_WORDS

CITATION = """@article{yan2023textpromptir,
  title   = {Textual Prompt Guided Image Restoration},
  author  = {Yan, Qiuhai and Jiang, Aiwen and Chen, Kang and Peng, Long and Yi, Qiaosi and Zhang, Chunjie},
  journal = {arXiv preprint arXiv:2312.06162},
  year    = {2023}
}"""
TRAINING_FIELDS = ("preset", "de_type", "epochs", "batch_size", "patch_size", "lr", "precision", "device",
                   "data_root", "time_budget")


def training_lines(config: dict[str, Any]) -> list[str]:
    """The recipe, data, steps, time and code version the release records."""
    training = config.get("training") or {}
    options = training.get("options") or {}
    lines = [f"- {k}: `{options[k]}`" for k in TRAINING_FIELDS if options.get(k) not in (None, "")]
    if training.get("step") is not None:
        lines.append(f"- steps: {training['step']} (epoch {int(training.get('epoch') or 0) + 1})")
    seconds = training.get("trained_s")
    if seconds:
        on_gpu = str(options.get("device", "")).startswith("cuda")
        lines.append(f"- training time: {seconds / 3600:.2f} {'GPU' if on_gpu else 'device'} hours (steps only)")
    else:
        lines.append("- training time: not recorded in the checkpoint")
    lines.append(f"- code: {config.get('exported_with', 'unknown')} (at export)")
    return lines or ["- not recorded in the checkpoint"]


def results_lines(results: dict[str, Any] | None) -> list[str]:
    """The results tables, one per protocol, or a line saying none were given."""
    if not results or not results.get("sets"):
        return ["No results file was given at export: this checkpoint's scores are not part of its card."]
    table = Results(Path("."), results["checkpoint"], list(results["sets"])).markdown()
    version = (results["sets"][0].get("versions") or {}).get("project")
    return [f"Scored by test.py ({version or 'version unknown'}); every table says how it was scored.", "", table]


def model_card(config: dict[str, Any], results: dict[str, Any] | None) -> str:
    """The README.md text of a release."""
    tasks = config.get("tasks") or []
    model = config["model"]
    what = ", ".join(f"{TASK_WORDS.get(t, t)} ({t})" for t in tasks)
    blind = ("It also holds a degradation classifier, so it can read what is wrong from the image itself."
             if config.get("classifier") else "It has no degradation classifier: tell it what is wrong.")
    lines = ["# TextPromptIR restoration weights", "",
             "An all-in-one image restoration network steered by an instruction in words (a reproduction of "
             "TextPromptIR, arXiv 2312.06162).", "",
             "## What it restores", "", f"Removes {what}, as the instruction asks. {blind}", "",
             f"Network: dim {model['dim']}, blocks {model['num_blocks']}, refinement {model['num_refinement_blocks']}, "
             f"text width {model['text_dim']}, conditioning `{model['text_cond']}`; weights stored as "
             f"{config['dtype']} (SHA-256 of the weights: `{config['weights_sha256']}`).", "",
             "## How it was trained", "", *training_lines(config), "",
             "## Results", "", *results_lines(results), "",
             "## Limitations", "",
             "- It restores only the degradations listed above, at the strengths it was trained on; other "
             "degradations, or the same ones much stronger, are left or made worse.",
             "- Scores on the demo set are not comparable to published benchmark numbers.",
             "- Weights stored in bf16/fp16 are rounded: they score slightly below the fp32 checkpoint.", "",
             "## How to load", "",
             "```bash",
             "python demo.py --ckpt <this folder> --input photo.jpg --instruction \"remove the rain\"",
             "python test.py --ckpt <this folder> --name <run>",
             "```", "",
             "```python",
             "from net.model import TextPromptIR",
             "net = TextPromptIR.from_pretrained(\"<this folder or a Hub id>\")  # the network alone",
             "from utils.runtime.engine import Restorer",
             "restorer = Restorer(\"<this folder>\")  # network, instruction encoder, classifier",
             "restored = restorer(rgb, \"remove the rain\")  # rgb: HxWx3 float in [0, 1]",
             "```", "",
             "Every file is listed in `SHA256SUMS` (`sha256sum -c SHA256SUMS`); no file is a pickle.", "",
             "## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(lines)
