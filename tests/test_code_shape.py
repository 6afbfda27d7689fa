"""Size limits of the package's source: no module over 600 lines, no function over 80.

Small modules and functions are what lets a newcomer find and change one thing. A limit that
must be broken is listed in EXCEPTIONS with the reason, so that breaking it is a decision.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "awbench"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80

# "module path" or "module path:qualified.function" -> why it may be longer
EXCEPTIONS: dict[str, str] = {}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _functions(tree: ast.AST, prefix: str = ""):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = f"{prefix}{node.name}"
            yield name, node.end_lineno - node.lineno + 1
            yield from _functions(node, name + ".")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")


def long_modules() -> list[str]:
    found = []
    for path in _modules():
        rel = path.relative_to(PACKAGE.parent).as_posix()
        n = len(path.read_text().splitlines())
        if n > MAX_MODULE_LINES and rel not in EXCEPTIONS:
            found.append(f"{rel}: {n} lines")
    return found


def long_functions() -> list[str]:
    found = []
    for path in _modules():
        rel = path.relative_to(PACKAGE.parent).as_posix()
        for name, n in _functions(ast.parse(path.read_text())):
            if n > MAX_FUNCTION_LINES and f"{rel}:{name}" not in EXCEPTIONS:
                found.append(f"{rel}:{name}: {n} lines")
    return found


def test_the_checker_sees_functions_and_methods():
    tree = ast.parse(
        "def f():\n    pass\nclass C:\n    def g(self):\n        def h():\n            pass\n"
    )
    assert dict(_functions(tree)) == {"f": 2, "C.g": 3, "C.g.h": 2}
    assert len(_modules()) > 20


def test_no_module_over_the_limit():
    assert long_modules() == []


def test_no_function_over_the_limit():
    assert long_functions() == []


def private_imports() -> list[str]:
    """``from awbench.x import _name`` anywhere in the package: a private name another module
    relies on is public in all but name, and renaming it breaks code nobody expected."""
    found = []
    for path in _modules():
        rel = path.relative_to(PACKAGE.parent).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("awbench"):
                found += [
                    f"{rel}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    return found


def test_no_private_name_imported_across_modules():
    assert private_imports() == []


def test_every_exception_still_exists():
    known = {p.relative_to(PACKAGE.parent).as_posix() for p in _modules()}
    for key in EXCEPTIONS:
        assert key.split(":")[0] in known, f"stale exception {key}"
