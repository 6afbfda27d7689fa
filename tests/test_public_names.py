"""One list of public names: the table in awbench/__init__.py is what ``__all__``,
``dir(awbench)``, the lazy loader and the TYPE_CHECKING block (parsed, as a type checker
reads it) all say, every name resolves to the object its module defines, and the notebook
namespaces (plots, takeaways, sweeps, measures, knob_panel) export exactly their ``__all__``.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import pytest

import awbench

INIT = Path(awbench.__file__)
PUBLIC = awbench._PUBLIC
NAMESPACES = [n for n, m in PUBLIC.items() if m == f"awbench.{n}" and m != "awbench.landscape"]


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a name inside a module, not a package
        return False


def type_checking_names() -> dict[str, str]:
    """{name: module} of the imports under ``if TYPE_CHECKING:`` in awbench/__init__.py."""
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    blocks = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    ]
    assert len(blocks) == 1, "expected one `if TYPE_CHECKING:` block"
    out: dict[str, str] = {}
    for node in blocks[0].body:
        assert isinstance(node, ast.ImportFrom), ast.unparse(node)
        for alias in node.names:
            name = alias.asname or alias.name
            assert name not in out, f"{name} imported twice"
            # `from awbench.x import y` names a module when awbench.x.y is one
            candidate = f"{node.module}.{alias.name}"
            out[name] = candidate if _is_module(candidate) else node.module
    return out


def test_all_is_the_table():
    assert awbench.__all__ == list(PUBLIC)
    assert len(set(awbench.__all__)) == len(awbench.__all__)


def test_dir_shows_the_public_names_and_nothing_else_public():
    shown = {n for n in dir(awbench) if not n.startswith("_")}
    assert shown == set(PUBLIC)


def test_type_checking_block_is_the_table():
    assert type_checking_names() == PUBLIC


@pytest.mark.parametrize("name", list(PUBLIC))
def test_every_public_name_resolves_to_its_module(name):
    module = PUBLIC[name]
    value = getattr(awbench, name)
    if module.rsplit(".", 1)[-1] == name:
        assert isinstance(value, types.ModuleType) and value.__name__ == module
    else:
        assert value is getattr(importlib.import_module(module), name)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'plot'"):
        awbench.plot  # noqa: B018


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_a_namespace_exports_its_all_and_nothing_else(namespace):
    mod = importlib.import_module(f"awbench.{namespace}")
    exported = set(mod.__all__)
    assert len(exported) == len(mod.__all__), f"awbench.{namespace}.__all__ repeats a name"
    assert all(hasattr(mod, n) for n in exported)
    public = {
        n
        for n, v in vars(mod).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType)
    }
    assert public == exported, f"awbench.{namespace}: not in __all__ {public - exported}"


def test_the_namespaces_do_not_overlap():
    seen: dict[int, str] = {}
    for namespace in NAMESPACES:
        mod = importlib.import_module(f"awbench.{namespace}")
        for name in mod.__all__:
            value = getattr(mod, name)
            if callable(value):
                where = f"awbench.{namespace}.{name}"
                assert id(value) not in seen, f"{where} is also {seen[id(value)]}"
                seen[id(value)] = where


def test_import_awbench_stays_light():
    """The table is only read: importing the package loads no torch, pandas or plotly."""
    code = (
        "import sys, awbench; awbench.__all__; dir(awbench);"
        "print(sorted(m for m in ('torch', 'pandas', 'plotly') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
