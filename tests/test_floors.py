"""The package's floors: every import points down, and the wire codec stays light.

Floors, bottom first (docs/architecture.md)::

    delgrad, delgrad.errors     the namespace root and the one error tree
    delgrad.runtime             synchronous DelGrad library   delgrad.protocols  wire and bus
    delgrad.runtime.service     the asyncio service of one device
    delgrad.drivers             driver implementations
    delgrad.tools               the `delgrad` command, apps, plots, benchmarks
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import delgrad

PACKAGE_DIRS = {
    "delgrad": Path(delgrad.__file__).resolve().parent,
    "delgrad.runtime": None,
    "delgrad.protocols": None,
    "delgrad.drivers": None,
    "delgrad.tools": None,
}

# What each floor may import from delgrad (besides itself and its own subpackages).
ALLOWED: dict[str, set[str]] = {
    "delgrad": set(),
    "delgrad.errors": set(),
    "delgrad.runtime": {"delgrad.errors"},
    "delgrad.protocols": {"delgrad.errors"},
    "delgrad.runtime.service": {"delgrad.errors", "delgrad.runtime", "delgrad.protocols"},
    "delgrad.drivers": {"delgrad.errors", "delgrad.runtime"},
    "delgrad.tools": {
        "delgrad.errors",
        "delgrad.runtime",
        "delgrad.runtime.service",
        "delgrad.protocols",
        "delgrad.drivers",
    },
}
FLOORS = sorted(ALLOWED, key=len, reverse=True)  # most specific first


def _floor(module: str) -> str:
    for floor in FLOORS:
        if module == floor or module.startswith(floor + "."):
            return floor
    raise AssertionError(f"{module} is on no floor")


def _modules() -> list[tuple[str, Path]]:
    import delgrad.drivers
    import delgrad.protocols
    import delgrad.runtime
    import delgrad.tools

    found = [("delgrad.errors", Path(sys.modules["delgrad.errors"].__file__ or ""))]
    for pkg in (delgrad.runtime, delgrad.protocols, delgrad.drivers, delgrad.tools):
        root = Path(pkg.__file__ or "").resolve().parent
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found.append((".".join([pkg.__name__, *parts]), path))
    return found


def _imports(path: Path, module: str) -> list[tuple[int, str, bool]]:
    """(line, imported delgrad module, whether at module level) of every import."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(node) for node in tree.body}
    out = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not path.name == "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - node.level + 1]
                names = [".".join([*base, node.module] if node.module else base)]
            elif node.module:
                names = [node.module]
        for name in names:
            if name == "delgrad" or name.startswith("delgrad."):
                out.append((node.lineno, name, id(node) in top))
    return out


def test_every_import_points_down_a_floor():
    wrong = []
    for module, path in _modules():
        floor = _floor(module)
        for line, target, _ in _imports(path, module):
            target_floor = _floor(target)
            if target_floor != floor and target_floor not in ALLOWED[floor]:
                wrong.append(f"{path}:{line} {module} imports {target} ({target_floor})")
    assert not wrong, "imports that point up or across a floor:\n" + "\n".join(wrong)


def test_no_delgrad_import_hides_inside_a_function():
    hidden = []
    for module, path in _modules():
        for line, target, top_level in _imports(path, module):
            if not top_level:
                hidden.append(f"{path}:{line} {module} imports {target} lazily")
    assert not hidden, "\n".join(hidden)


@pytest.mark.parametrize("package", ["delgrad.protocols", "delgrad.errors"])
def test_wire_packages_do_not_import_numba_or_the_runtime(package):
    code = (
        f"import sys, {package}; "
        "print(sorted(m for m in ('numba', 'delgrad.runtime', 'delgrad.drivers') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
