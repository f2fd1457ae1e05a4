"""The package's layout, held: imports run one way (no cycles, imports made
only for type checking and inside functions included), no module reaches
into another's underscore names, and no module outgrows what one reader
takes in at once."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pyramid_redis_sessions"
NAME = "pyramid_redis_sessions"

MAX_MODULE_LINES = 600
MAX_SESSION_CLASS_LINES = 550


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute name a ``from … import`` names, within the package."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not _is_package(module):
        base.pop()
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(module: str) -> dict[str, list[tuple[int, set[str]]]]:
    """What ``module`` imports from within the package: each imported
    module, with the line and the names taken from it."""
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    found: dict[str, list[tuple[int, set[str]]]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(NAME) and alias.name in MODULES:
                    found.setdefault(alias.name, []).append((node.lineno, set()))
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            if not target.startswith(NAME):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES:  # ``from . import limits``: the module
                    found.setdefault(sub, []).append((node.lineno, set()))
                elif target in MODULES:
                    found.setdefault(target, []).append((node.lineno, {alias.name}))
    return found


GRAPH = {module: set(imports_of(module)) - {module} for module in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_layout_sees_the_package():
    # A guard that parsed nothing would pass everything.
    assert f"{NAME}.session" in MODULES and f"{NAME}.cli.show" in MODULES
    assert f"{NAME}.values" in GRAPH[f"{NAME}.session"]
    assert f"{NAME}.limits" in GRAPH[f"{NAME}.contents"]


def test_imports_run_one_way():
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_takes_another_modules_underscore_names(module):
    taken = [
        (line, target, name)
        for target, uses in imports_of(module).items()
        for line, names in uses
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert taken == []


def _attribute_reads(module: str) -> list[tuple[int, str]]:
    """``x._name`` reads in ``module`` where ``x`` is not ``self`` or
    ``cls``: another object's private attribute (a module's included)."""
    tree = ast.parse(MODULES[module].read_text())
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (
                isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            )
        ):
            found.append((node.lineno, ast.unparse(node)))
    return found


def _private_names(module: str) -> set[str]:
    """The underscore names ``module`` defines: its functions and classes
    (methods included) and the attributes it sets on ``self``."""
    names = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
        ):
            names.add(node.attr)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


PRIVATE = {module: _private_names(module) for module in MODULES}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_reads_another_modules_private_attributes(module):
    # Reading another instance's private attribute is fine within the module
    # that defines it (``other._keys`` in ``__eq__``); a name that only
    # another module defines is that module's business.
    elsewhere = set().union(*(PRIVATE[m] for m in MODULES if m != module))
    reads = [
        (line, text)
        for line, text in _attribute_reads(module)
        if text.rsplit(".", 1)[-1] in elsewhere - PRIVATE[module]
    ]
    assert reads == []


def test_a_read_of_another_modules_private_name_is_seen():
    # session.py defines _current_id; no other module may read it.
    assert "_current_id" in PRIVATE[f"{NAME}.session"]
    assert "_current_id" not in PRIVATE[f"{NAME}.users"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_outgrows_one_reading(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{module}: {lines} lines"


def test_the_session_class_is_its_orchestration_only():
    tree = ast.parse(MODULES[f"{NAME}.session"].read_text())
    (cls,) = [
        n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "RedisSession"
    ]
    assert cls.end_lineno is not None
    decorated = min([cls.lineno, *(d.lineno for d in cls.decorator_list)])
    assert cls.end_lineno - decorated + 1 <= MAX_SESSION_CLASS_LINES
