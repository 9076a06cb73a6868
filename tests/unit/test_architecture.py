"""Boundaries of the design: shared never imports services; no service imports another."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_shared_never_imports_services() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "shared").rglob("*.py")
        if any(name.split(".")[0] == "services" for name in imported_modules(path))
    ]
    assert offenders == []


def test_no_service_imports_another() -> None:
    offenders = []
    for service_dir in (ROOT / "services").iterdir():
        if not service_dir.is_dir() or service_dir.name.startswith("__"):
            continue
        for path in service_dir.rglob("*.py"):
            for name in imported_modules(path):
                parts = name.split(".")
                if parts[0] == "services" and len(parts) > 1 and parts[1] != service_dir.name:
                    offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []
