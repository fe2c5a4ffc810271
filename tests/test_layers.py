"""The layering rules of docs/ARCHITECTURE.md, checked on the import graph.

Imports are read with ``ast`` (module level and inside functions; imports under
``if TYPE_CHECKING:`` are type-only and do not count). A rule broken here is a
dependency that points against the data flow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "auditd_py"
LEAF = {"auditd_py.errors", "auditd_py.events"}
"""Import nothing of the package."""


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_imports(tree: ast.AST, modules: set[str], *, type_only: bool = False) -> Iterator[str]:
    for node in ast.walk(tree):
        if not type_only and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []  # type-only
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                # `from auditd_py import events` depends on the module events, not on
                # the package's __init__ (which may re-export the importer itself)
                yield sub if sub in modules else node.module


def graph(*, type_only: bool = False) -> dict[str, set[str]]:
    files = {module_name(p): p for p in PKG.rglob("*.py")}
    out: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text())
        deps = {
            d
            for d in _runtime_imports(tree, set(files), type_only=type_only)
            if d in files and d not in (name, "auditd_py")
        }
        out[name] = deps
    return out


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.fixture(scope="module")
def imports() -> dict[str, set[str]]:
    return graph()


@pytest.mark.parametrize("type_only", [False, True], ids=["runtime", "with-type-only"])
def test_there_are_no_import_cycles(type_only: bool) -> None:
    """None at run time, and none through imports made for type checking either."""
    imports = graph(type_only=type_only)
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(n: str, stack: list[str]) -> None:
        state[n] = 1
        for d in sorted(imports[n]):
            if state.get(d) == 1:
                cycles.append([*stack[stack.index(d) :], d])
            elif d not in state:
                visit(d, [*stack, d])
        state[n] = 2

    for n in sorted(imports):
        if n not in state:
            visit(n, [n])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_leaf_layer_imports_nothing_of_the_package(imports: dict[str, set[str]]) -> None:
    for leaf in LEAF:
        assert imports[leaf] == set(), (leaf, imports[leaf])
    assert imports["auditd_py.contracts"] <= {"auditd_py.record"}


def test_the_chain_core_imports_only_the_leaf_layer(imports: dict[str, set[str]]) -> None:
    bad = {
        (n, d)
        for n, deps in imports.items()
        if _under(n, "auditd_py.chain")
        for d in deps
        if not _under(d, "auditd_py.chain") and d not in LEAF
    }
    assert not bad, sorted(bad)


@pytest.mark.parametrize("layer", ["auditd_py.sources", "auditd_py.forward"])
def test_sources_and_forwarders_know_no_daemon(layer: str, imports: dict[str, set[str]]) -> None:
    """Sources and forwarders see the daemon only through the contracts."""
    forbidden = ("auditd_py.daemon", "auditd_py.metalog", "auditd_py.control", "auditd_py.cli")
    bad = {
        (n, d)
        for n, deps in imports.items()
        if _under(n, layer)
        for d in deps
        if any(_under(d, f) for f in forbidden)
    }
    assert not bad, sorted(bad)


def test_sources_do_not_touch_the_store(imports: dict[str, set[str]]) -> None:
    bad = {
        (n, d)
        for n, deps in imports.items()
        if _under(n, "auditd_py.sources")
        for d in deps
        if _under(d, "auditd_py.store")
    }
    assert not bad, sorted(bad)


def test_importing_a_source_loads_no_writer() -> None:
    """The layering holds at run time too: a source module pulls in no store module."""
    import subprocess
    import sys

    code = (
        "import sys, auditd_py.sources.file, auditd_py.sources.syslog, "
        "auditd_py.sources.journald; "
        "print(sorted(m for m in sys.modules if m.startswith(('auditd_py.store', "
        "'auditd_py.daemon', 'auditd_py.metalog'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert out == "[]", out


def test_the_report_writers_know_no_daemon_and_no_cli(imports: dict[str, set[str]]) -> None:
    """report/ renders a verification: it sees the verify driver, never the daemon."""
    forbidden = ("auditd_py.daemon", "auditd_py.metalog", "auditd_py.control", "auditd_py.cli")
    bad = {
        (n, d)
        for n, deps in imports.items()
        if _under(n, "auditd_py.report")
        for d in deps
        if any(_under(d, f) for f in forbidden)
    }
    assert not bad, sorted(bad)
