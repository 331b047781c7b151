"""The docs cannot rot silently: over README.md, CONTRIBUTING.md, docs/ and the folder READMEs, every relative
link and #anchor resolves (GitHub's anchors), every doc section a code comment or config file cites as
``docs/<page>.md#<section>`` exists, every ``make`` target and script option in a code block exists (read from
each script's ``--help``), README's headline figures equal their source in docs/benchmarks/, and every test
docs/guarantees.md names exists. The last tests break a copy of the docs in each way and check it is caught."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

from tests.conftest import ROOT

# Where docs live; the folders a scan never enters (built data, results, virtual environments)
DOC_FILES = ("README.md", "CONTRIBUTING.md", "data/Train/README.md", "test/README.md", "ckpt/README.md")
SKIP_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", "output", "logs", "out", ".gpu_data", "node_modules"}
CODE_SUFFIXES = {".py", ".sh", ".toml", ".txt", ".yaml", ".yml", ".cfg", ".ini"}
CITATION = re.compile(r"((?:docs/[\w./-]+|README|CONTRIBUTING)\.md)#([\w-]+)")
# Citation forms that no longer resolve to one section: the former BENCHMARKS.md, and "README, <title>"
OLD_CITATION = re.compile(r"BENCHMARKS\.md|README(?:\.md)?(?:, \"|: \d)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")
GUARANTEE = re.compile(r"tests/(test_\w+\.py)(?:::(test_\w+))?")


def doc_files(root: Path) -> list[Path]:
    docs = sorted((root / "docs").rglob("*.md")) if (root / "docs").is_dir() else []
    return [root / f for f in DOC_FILES if (root / f).is_file()] + docs


def code_files(root: Path) -> list[Path]:
    """Every code and config file of the project (not the built data, checkpoints or results)."""
    found = []
    for folder, dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root)
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not (rel == Path("data") and d.startswith("demo"))
                   and not (rel == Path(".") and d in ("ckpt", "test"))]
        found += [Path(folder) / f for f in files if Path(f).suffix in CODE_SUFFIXES or f == "Makefile"]
    return sorted(p for p in found if p.name != "test_docs.py")


def outside_code(text: str) -> str:
    """The text with fenced code blocks blanked (their lines kept, so line numbers hold)."""
    out, fenced = [], False
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            out.append("")
        else:
            out.append("" if fenced else line)
    return "\n".join(out)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: the rendered text lower-cased, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@lru_cache(maxsize=None)
def sections(path: Path) -> dict[str, str]:
    """Each anchor of a markdown file and the text of its section (to the next heading of its level or above)."""
    lines = outside_code(path.read_text(encoding="utf-8")).split("\n")
    raw = path.read_text(encoding="utf-8").split("\n")
    heads = [(i, len(m.group(1)), m.group(2)) for i, line in enumerate(lines)
             if (m := re.match(r"(#{1,6})\s+(.*?)\s*#*\s*$", line))]
    found: dict[str, str] = {}
    for n, (i, level, title) in enumerate(heads):
        end = next((j for j, lv, _ in heads[n + 1:] if lv <= level), len(raw))
        anchor, k = slug(title), 1
        while anchor in found:
            anchor, k = f"{slug(title)}-{k}", k + 1
        found[anchor] = "\n".join(raw[i:end])
    return found


def broken_links(root: Path) -> list[str]:
    problems = []
    for doc in doc_files(root):
        for no, line in enumerate(outside_code(doc.read_text(encoding="utf-8")).split("\n"), 1):
            for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
                if re.match(r"[a-z]+:", target):
                    continue
                path, _, anchor = target.partition("#")
                dest = (doc.parent / path).resolve() if path else doc
                where = f"{doc.relative_to(root)}:{no}: {target}"
                if not dest.exists():
                    problems.append(f"{where}: no such file")
                elif anchor and (dest.suffix != ".md" or anchor not in sections(dest)):
                    problems.append(f"{where}: no such section")
    return problems


def missing_cited_sections(root: Path) -> list[str]:
    problems = []
    for path in code_files(root):
        text = path.read_text(encoding="utf-8", errors="replace")
        for no, line in enumerate(text.split("\n"), 1):
            where = f"{path.relative_to(root)}:{no}"
            for page, anchor in CITATION.findall(line):
                dest = root / page
                if not dest.is_file() or anchor not in sections(dest):
                    problems.append(f"{where}: cites {page}#{anchor}, which does not exist")
            if OLD_CITATION.search(line):
                problems.append(f"{where}: cite a section as docs/<page>.md#<section>: {line.strip()}")
    return problems


def shell_commands(root: Path) -> list[tuple[str, list[str]]]:
    """(where, words) of each command in the docs' code blocks and inline `python ...`/`make ...` spans."""
    found = []
    for doc in doc_files(root):
        text, fenced, block = doc.read_text(encoding="utf-8"), False, []
        for no, line in enumerate(text.split("\n"), 1):
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            spans = [line] if fenced else re.findall(r"`((?:python|make|torchrun) [^`]+)`", line)
            for span in spans:
                block.append(span)
                if span.rstrip().endswith("\\"):
                    continue
                command = " ".join(s.rstrip().rstrip("\\") for s in block).split(" # ")[0]
                block = []
                for part in re.split(r"&&|;|\|", command):
                    try:
                        words = shlex.split(part)
                    except ValueError:
                        words = part.split()
                    if words:
                        found.append((f"{doc.relative_to(root)}:{no}", words))
    return found


def script_of(words: list[str]) -> tuple[str | None, list[str]]:
    """The script (a path, or a module for ``-m``, with its subcommand if any) a command runs, and the words
    after it."""
    while words and re.match(r"\w+=", words[0]) or words[:1] == ["time"]:
        words = words[1:]
    if not words or not (words[0].endswith("python") or words[0].endswith("python3") or words[0] == "torchrun"):
        return None, []
    rest = words[1:]
    for i, w in enumerate(rest):
        if w == "-c":
            return None, []
        if w == "-m" and i + 1 < len(rest):
            module, after = rest[i + 1], rest[i + 2:]
            if module.split(".")[0] not in ("utils", "scripts", "net"):
                return None, []
            if after and re.fullmatch(r"[a-z][a-z_]*", after[0]):  # a subcommand: its own --help
                return f"{module} {after[0]}", after[1:]
            return module, after
        if w.endswith(".py"):
            return w, rest[i + 1:]
    return None, []


@lru_cache(maxsize=None)
def helps(scripts: tuple[str, ...]) -> dict[str, str]:
    """Each script's --help text, all read in one process."""
    code = (
        "import contextlib, io, json, runpy, sys\n"
        "sys.path.insert(0, '.')\n"
        "out = {}\n"
        "for s in json.loads(sys.argv[1]):\n"
        "    name, *sub = s.split(' ')\n"
        "    buf = io.StringIO(); sys.argv = [name, *sub, '--help']\n"
        "    try:\n"
        "        with contextlib.redirect_stdout(buf):\n"
        "            runpy.run_path(name, run_name='__main__') if name.endswith('.py') else "
        "runpy.run_module(name, run_name='__main__', alter_sys=True)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "    out[s] = buf.getvalue()\n"
        "print(json.dumps(out))\n")
    r = subprocess.run([sys.executable, "-c", code, json.dumps(scripts)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def make_targets(root: Path) -> set[str]:
    return set(re.findall(r"^([\w.-]+)\s*:(?!=)", (root / "Makefile").read_text(), re.M))


def unknown_commands(root: Path) -> list[str]:
    commands = shell_commands(root)
    targets = make_targets(root)
    scripts = sorted({s for _, w in commands if (s := script_of(w)[0]) is not None})
    problems = [f"{where}: {script}: no such script" for where, w in commands
                if (script := script_of(w)[0]) and script.endswith(".py") and not (root / script).is_file()]
    text = helps(tuple(s for s in scripts if not s.endswith(".py") or (ROOT / s).is_file()))
    for where, words in commands:
        if words[0] == "make" or words[:2] == ["time", "make"]:
            args = words[words.index("make") + 1:]
            problems += [f"{where}: make {t}: no such target" for t in args
                         if re.fullmatch(r"\w[\w.-]*", t) and t not in targets]
            continue
        script, args = script_of(words)
        if script is None or script not in text:
            continue
        options = set(re.findall(r"(?<![\w-])(--[\w-]+)", text[script]))
        problems += [f"{where}: {script} has no option {a}" for a in args
                     if a.startswith("--") and a.split("=")[0] not in options]
    return problems


def units(text: str) -> list[str]:
    """README cut into paragraphs, list items and tables; a table joins the paragraph just before it."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n", outside_code(text)):
        items = re.split(r"\n(?=- )", block.strip())
        if block.lstrip().startswith("|") and out:
            out[-1] += "\n" + block
        else:
            out += items
    return out


def headline_mismatches(root: Path) -> list[str]:
    """Every number in a README paragraph, list item or table that links into docs/benchmarks/ must appear in
    the section (or page) it links to."""
    problems = []
    for unit in units((root / "README.md").read_text(encoding="utf-8")):
        sources = []
        for target in LINK.findall(unit):
            path, _, anchor = target.partition("#")
            if path.startswith("docs/benchmarks/") and (root / path).is_file():
                secs = sections(root / path)
                sources.append(secs.get(anchor, "") if anchor else (root / path).read_text(encoding="utf-8"))
        if not sources:
            continue
        prose = LINK.sub("", unit)
        for number in NUMBER.findall(prose):
            if not any(re.search(rf"(?<![\w.]){re.escape(number)}(?![\d])", s) for s in sources):
                problems.append(f"README.md: {number} is not in its source ({unit.strip()[:60]}...)")
    return problems


def missing_tests(root: Path) -> list[str]:
    problems = []
    for doc in doc_files(root):
        for file, name in GUARANTEE.findall(doc.read_text(encoding="utf-8")):
            path = root / "tests" / file
            if not path.is_file():
                problems.append(f"{doc.relative_to(root)}: tests/{file} does not exist")
            elif name and not re.search(rf"^def {name}\(", path.read_text(encoding="utf-8"), re.M):
                problems.append(f"{doc.relative_to(root)}: tests/{file}::{name} does not exist")
    return problems


def test_every_link_and_anchor_resolves():
    assert broken_links(ROOT) == []


def test_every_section_cited_by_code_exists():
    assert missing_cited_sections(ROOT) == []


def test_every_make_target_and_script_option_in_the_docs_exists():
    assert unknown_commands(ROOT) == []


def test_readme_headline_figures_equal_their_source():
    assert headline_mismatches(ROOT) == []


def test_every_test_the_guarantees_name_exists():
    assert missing_tests(ROOT) == []


def test_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").split("\n")
    assert len(lines) <= 160
    assert any("make demo" in line for line in lines[:40]) and any("before_after" in line for line in lines[:40])


@pytest.fixture(scope="module")
def copy_of_docs(tmp_path_factory) -> Path:
    """The docs, the Makefile and the code files that cite the docs, copied to break."""
    root = tmp_path_factory.mktemp("docs_copy")
    for path in doc_files(ROOT) + code_files(ROOT) + [Path(__file__)]:
        dest = root / path.relative_to(ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    for picture in (ROOT / "docs").rglob("*"):
        if picture.is_file() and picture.suffix != ".md":
            (root / picture.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(picture, root / picture.relative_to(ROOT))
    return root


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


BREAKS = {
    "a link to a missing page": ("README.md", "(docs/training.md)", "(docs/trainig.md)", broken_links),
    "a link to a missing section": ("README.md", "docs/data.md#test-layout", "docs/data.md#test-layouts",
                                    broken_links),
    "a section a code comment cites": ("docs/benchmarks/routes.md", "## The order of the passes",
                                       "## The passes' order", missing_cited_sections),
    "an option that does not exist": ("README.md", "--name my_eval", "--nme my_eval", unknown_commands),
    "a make target that does not exist": ("README.md", "make app ", "make ap ", unknown_commands),
    "a headline figure unlike its source": ("README.md", "| 24.95 / 0.663 |", "| 24.96 / 0.663 |", headline_mismatches),
    "a test the guarantees name": ("docs/guarantees.md", "test_resume_is_exact", "test_resume_is_exactly",
                                   missing_tests),
}


@pytest.mark.parametrize("kind", sorted(BREAKS))
def test_a_broken_copy_is_caught(copy_of_docs, tmp_path, kind):
    root = tmp_path / "copy"
    shutil.copytree(copy_of_docs, root)
    sections.cache_clear()
    file, old, new, check = BREAKS[kind]
    assert check(root) == []
    replace_once(root / file, old, new)
    sections.cache_clear()
    assert len(check(root)) >= 1
