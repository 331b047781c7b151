"""The house rules of the code's layout: imports go down the floors (scripts -> options -> utils ->
net), net/ takes only errors and tasks from utils/, loading a checkpoint does not import the training
step, `import options` loads no image library, and every utils subpackage says what it holds."""
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
