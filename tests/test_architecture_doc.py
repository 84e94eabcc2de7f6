"""docs/architecture.md against the code: every `path: Name` it cites exists, and every engine module is in its
layout (a rename or a new module that the page does not follow fails here)."""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "architecture.md").read_text()
# `engine/x/y.py`, or `engine/x/y.py: Name` / `...: Class.method`; a reference may wrap its line after the colon.
REF = re.compile(r"`((?:engine|kernels|csrc|bench)/[\w/]+\.(?:py|cpp))(?::\s+([\w.]+))?`")


def defined(path: Path) -> set[str]:
    """Top-level names and Class.method names defined in a Python file."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            if isinstance(node, ast.ClassDef):
                names |= {f"{node.name}.{m.name}" for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))}
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def test_the_page_names_code_that_exists():
    refs = REF.findall(DOC)
    assert len(refs) > 40, "the step walk should cite the files and functions it follows"
    missing = []
    for path, name in refs:
        file = ROOT / path
        if not file.is_file():
            missing.append(path)
        elif name and path.endswith(".py") and name not in defined(file):
            missing.append(f"{path}: {name}")
    assert not missing, f"docs/architecture.md names what does not exist: {missing}"


def layout() -> dict[str, set[str]]:
    """{package: module file names} from the layout block of the page ("" = engine/ itself)."""
    block = DOC.split("## Layout", 1)[1].split("```")[1]
    out: dict[str, set[str]] = {}
    current = None
    for line in block.splitlines():
        m = re.match(r"^  (\w+)/\s", line)
        if m:
            current = m.group(1)
        elif re.match(r"^  \w+\.py", line):
            current = ""
        elif not line.startswith("    "):
            current = None if not line.startswith("  ") else current
        if current is not None:
            out.setdefault(current, set()).update(re.findall(r"\b(\w+)\.py\b", line))
    return out


@pytest.mark.parametrize("package", sorted({p.parent.name if p.parent.name != "engine" else ""
                                            for p in (ROOT / "engine").rglob("*.py")}))
def test_every_module_is_in_the_layout(package):
    folder = ROOT / "engine" / package
    modules = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
    listed = layout().get(package, set())
    assert modules <= listed, f"engine/{package}: not in docs/architecture.md's layout: {sorted(modules - listed)}"
    assert listed <= modules | {"__init__"}, f"engine/{package}: the layout names modules that do not exist: {sorted(listed - modules)}"
