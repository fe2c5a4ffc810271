"""The test suite's own rule: what tests share lives in tests/support/, so no
test module imports another (importing one runs its module-level code and drags
its fixtures and marks along)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def imported_modules(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def test_no_test_module_imports_another() -> None:
    offenders = {
        path.name: sorted(m for m in imported_modules(path) if m.startswith("tests.test_"))
        for path in sorted(TESTS.glob("test_*.py"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_support_modules_do_not_import_tests() -> None:
    for path in sorted((TESTS / "support").glob("*.py")):
        assert not any(m.startswith("tests.test_") for m in imported_modules(path)), path.name
