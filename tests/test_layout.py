"""The house rules of the code's layout: imports go down the floors (scripts -> options -> utils ->
net, and inside utils/ from the training, scoring and release code down to the root helpers), net/
takes only errors and tasks from utils/, loading a checkpoint does not import the training step,
`import options` loads no image library, and every utils subpackage says what it holds."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {"train", "test", "demo", "bench", "app"}
FLOOR = {"net": 0, "utils": 1, "options": 2}  # scripts are floor 3
NET_MAY_IMPORT = {"utils.errors", "utils.tasks"}
# The floors inside utils/: a module imports its own floor or lower ones, never a higher one. The
# longest matching prefix names a module's floor; every module of utils/ must match one.
UTILS_FLOORS = {
    **dict.fromkeys(["utils.errors", "utils.tasks", "utils.digest", "utils.metrics", "utils.atomic",
                     "utils.full_disk", "utils.file_lock", "utils.progress", "utils.tables",
                     "utils.stop_signals", "utils.recipe", "utils.__init__"], 0),  # the root helpers
    "utils.data": 1,
    "utils.text": 2,
    "utils.release.hub": 3, "utils.release.folder": 3,  # reading a release folder, as load_checkpoint does
    "utils.cli": 3,  # option types: pixel limits (data) and Hub ids (release.hub)
    "utils.checkpoint": 4,
    "utils.runtime": 5,
    "utils.train": 6, "utils.eval": 6,
    "utils.release": 7,  # exporting a release: its card quotes the scored results
    "utils.bench": 8,
}


def floor_of(module: str) -> int:
    top = module.split(".")[0]
    return 3 if top in SCRIPTS or top == "scripts" else FLOOR.get(top, -1)


def project_imports(path: Path) -> list[str]:
    """Every project module ``path`` imports, at the top or inside functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
        found += [n for n in names if floor_of(n) >= 0]
    return found


def source_files() -> list[Path]:
    files = [ROOT / "options.py", *(ROOT / f"{s}.py" for s in SCRIPTS), *(ROOT / "scripts").glob("*.py")]
    return [p for p in files + sorted((ROOT / "utils").rglob("*.py")) + sorted((ROOT / "net").rglob("*.py"))
            if p.is_file()]


def test_no_file_imports_a_higher_floor():
    wrong = []
    for path in source_files():
        rel = path.relative_to(ROOT)
        own = floor_of(rel.stem if len(rel.parts) == 1 else rel.parts[0])
        wrong += [f"{rel} imports {m}" for m in project_imports(path)
                  if floor_of(m) > own and not (own == 0 and m in NET_MAY_IMPORT)]
    assert wrong == []


def utils_floor(module: str) -> int | None:
    """The floor of a ``utils.`` module inside utils/ (None for a module no floor names)."""
    prefixes = [p for p in UTILS_FLOORS if module == p or module.startswith(p + ".")]
    return UTILS_FLOORS[max(prefixes, key=len)] if prefixes else None


def module_name(path: Path) -> str:
    """``utils/data/check.py`` -> ``utils.data.check``."""
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def upward_imports(path: Path, module: str) -> list[str]:
    """The imports of ``path`` (read as ``module``) that climb a floor, inside functions too."""
    own_top = floor_of(module)
    own_utils = utils_floor(module) if module.startswith("utils.") else None
    wrong = []
    for m in project_imports(path):
        if own_top == 0 and m.startswith("utils"):
            climbs = m not in NET_MAY_IMPORT
        elif own_utils is not None and m.startswith("utils."):
            climbs = (utils_floor(m) or 0) > own_utils
        else:
            climbs = floor_of(m) > own_top
        wrong += [f"{module} imports {m}"] if climbs else []
    return wrong


def test_every_utils_module_has_a_floor():
    unplaced = [module_name(p) for p in sorted((ROOT / "utils").rglob("*.py")) if utils_floor(module_name(p)) is None]
    assert unplaced == []


def test_no_utils_module_imports_a_higher_utils_floor():
    wrong = [w for p in sorted((ROOT / "utils").rglob("*.py")) for w in upward_imports(p, module_name(p))]
    assert wrong == []


@pytest.mark.parametrize("module, imported", [
    ("net.blocks", "utils.checkpoint"),  # net/ takes only errors and tasks from utils/
    ("net.blocks", "options"),
    ("utils.data.check", "utils.eval.benchmarks"),
    ("utils.metrics", "utils.data.image_io"),
    ("utils.checkpoint", "utils.runtime.device"),
    ("utils.release.folder", "utils.checkpoint"),
    ("utils.train.step", "utils.release.export"),
])
def test_an_upward_import_inside_a_function_fails_the_check(tmp_path, module, imported):
    sample = tmp_path / "sample.py"
    sample.write_text(f"import os\n\n\ndef f():\n    from {imported} import something\n    return something\n")
    assert upward_imports(sample, module) == [f"{module} imports {imported}"]


@pytest.mark.parametrize("module, imported", [
    ("net.blocks", "utils.errors"),
    ("utils.data.check", "utils.metrics"),
    ("utils.runtime.engine", "utils.checkpoint"),
    ("utils.eval.figures", "utils.train.step"),  # the same floor
    ("utils.bench.measure", "utils.release.onnx_export"),
])
def test_a_downward_or_sideways_import_passes_the_check(tmp_path, module, imported):
    sample = tmp_path / "sample.py"
    sample.write_text(f"def f():\n    import {imported}\n")
    assert upward_imports(sample, module) == []


# What an import inside a function of utils/ or net/ may defer: a heavy dependency only some commands use.
DEFERRED = ("huggingface_hub", "onnxruntime", "onnx", "einops", "torch._dynamo", "torch._inductor",
            "torch._functorch", "torch.utils.tensorboard", "gradio", "matplotlib", "transformers", "playwright")


def local_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import inside a function of ``path``."""
    found = []
    for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found += [(n.lineno, n.module if isinstance(n, ast.ImportFrom) else n.names[0].name)
                      for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))]
    return sorted(set(found))


def undeferred_local_imports(path: Path, name: str) -> list[str]:
    """The imports inside functions of ``path`` that defer nothing heavy, or do not say why they do."""
    lines = path.read_text(encoding="utf-8").splitlines()
    wrong = []
    for lineno, module in local_imports(path):
        block = [lines[lineno - 1]]  # the import, and the imports and comments right above it
        while lineno - len(block) > 0 and lines[lineno - len(block) - 1].strip().startswith(("#", "from ", "import ")):
            block.append(lines[lineno - len(block) - 1])
        if not (module.startswith(DEFERRED) and any("#" in line for line in block)):
            wrong.append(f"{name}:{lineno} imports {module} inside a function")
    return wrong


def test_a_utils_or_net_import_inside_a_function_defers_a_heavy_dependency_and_says_so():
    files = sorted((ROOT / "utils").rglob("*.py")) + sorted((ROOT / "net").rglob("*.py"))
    wrong = [w for p in files for w in undeferred_local_imports(p, str(p.relative_to(ROOT)))]
    assert wrong == []


def test_the_local_import_check_refuses_a_plain_one_and_takes_a_deferred_one(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from utils.checkpoint import load_model\n\n\n"
                      "def g():\n    import gradio  # only the page needs it\n")
    assert undeferred_local_imports(sample, "sample.py") == ["sample.py:2 imports utils.checkpoint inside a function"]


def test_net_takes_only_errors_and_tasks_from_utils():
    wrong = [f"{p.relative_to(ROOT)} imports {m}" for p in sorted((ROOT / "net").rglob("*.py"))
             for m in project_imports(p) if m.startswith("utils") and m not in NET_MAY_IMPORT]
    assert wrong == []


def test_loading_a_checkpoint_does_not_import_the_training_step():
    imported = project_imports(ROOT / "utils" / "checkpoint.py")
    assert imported and not [m for m in imported if m.startswith("utils.train")]


def test_importing_options_loads_no_image_library():
    code = ("import sys, options; print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'cv2', 'PIL', 'skimage'}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("package", sorted(p.parent.name for p in (ROOT / "utils").glob("*/__init__.py")))
def test_every_utils_subpackage_says_what_belongs_there(package):
    doc = ast.get_docstring(ast.parse((ROOT / "utils" / package / "__init__.py").read_text(encoding="utf-8")))
    assert doc and len(doc.split()) >= 8


def test_the_floor_check_sees_an_import_inside_a_function(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    import train\n    from options import train_options\n")
    assert project_imports(sample) == ["train", "options"]


def test_ruff_reads_every_package_including_utils_data():
    """The linter's exclusions name the top-level data folders only, never a package called data."""
    import subprocess

    shown = subprocess.run([sys.executable, "-m", "ruff", "check", "--show-files", "."], cwd=ROOT,
                           capture_output=True, text=True).stdout
    assert "utils/data/layouts.py" in shown and "utils/text/bank.py" in shown


MAX_FUNCTION_LINES = 60  # CONTRIBUTING: a function that needs more is two functions


def test_no_function_outside_the_tests_is_longer_than_60_lines():
    long = []
    for path in source_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []
