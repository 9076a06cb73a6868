"""Boundaries of the design: shared never imports services; no service imports another; a
service's SQL lives in its repository modules."""

from __future__ import annotations

import ast
import re
from fnmatch import fnmatch
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


# SQL lives in repositories (docs/DECISIONS.md, Foundation, "SQL lives in repositories"). A
# module is a repository when it is named repository.py or sits in a repository/ package.
# SQLAlchemy's statement builders, wherever they are imported from (sqlalchemy, its dialects,
# sqlmodel): called outside a repository, they write SQL there.
BUILDERS = {"select", "insert", "update", "delete", "text", "exists", "tuple_", "func"}
BUILDERS |= {"union", "union_all", "literal_column"}
# What runs a statement, called on a session or a connection (SQLAlchemy's or asyncpg's).
RUNNERS = {"execute", "executemany", "scalar", "scalars", "stream", "stream_scalars"}
RUNNERS |= {"fetch", "fetchval", "fetchrow", "copy_records_to_table", "copy_to_table"}
HANDLE = re.compile(r"(session|conn|connection)$")
SQL_TEXT = re.compile(
    r"^\s*(SELECT|INSERT INTO|UPDATE|DELETE FROM|WITH|LOCK TABLE|SET LOCAL|NOTIFY|LISTEN"
    r"|CREATE|ALTER|DROP|TRUNCATE)\b"
)
# How a service reaches asyncpg itself (the third way, "$1").
DRIVER_HELPERS = {"driver_connection", "statement_connection"}

# SQL outside a repository module: "path" (a glob) or "path::Qualified.name", and why.
SQL_ELSEWHERE = {
    "services/*/models.py": "table definitions: server defaults are DDL, not queries",
}
# Raw asyncpg outside the session's statements: only on the measured hot paths and on
# connections of their own; each in a repository.
DRIVER_SQL = {
    "services/listing/listings/repository.py": "create listing: listing, history and event in "
    "one statement",
    "services/listing/assets/repository.py": "the asset of a create",
    "services/listing/offers/repository.py": "partner offers",
    "services/listing/organizations/repository.py": "the key lookup, on every request",
    "services/listing/idempotency/repository.py": "idempotency keys, on every keyed create",
    "services/listing/imports/repository.py": "COPY of an import's rows",
    "services/gateway/partners/repository.py": "the inbox claim",
    "services/gateway/webhooks/repository.py": "a delivery's outcome, one statement an attempt",
    "services/gateway/repository.py": "the shared rate-limit buckets, a grant per share of a "
    "client's limit",
    "services/matching/repair/repository.py": "the indexer's lease taken by rebuild and "
    "check: a session advisory lock on a connection of its own",
}


def is_repository(path: Path) -> bool:
    return path.name == "repository.py" or "repository" in path.relative_to(ROOT).parts[:-1]


class SqlFinder(ast.NodeVisitor):
    """What writes or runs SQL in one module: (where, what) pairs, `where` being the path and
    the enclosing function's qualified name; `driver`: where asyncpg is reached directly."""

    def __init__(self, path: Path) -> None:
        self.path = str(path.relative_to(ROOT))
        self.scope: list[str] = []
        self.found: list[tuple[str, str]] = []
        self.driver: list[tuple[str, str]] = []
        self.names: dict[str, str] = {}  # local name -> SQLAlchemy/SQLModel name
        self.modules: set[str] = set()  # local names of SQLAlchemy/SQLModel modules
        self.asyncpg: set[str] = set()  # local names of the asyncpg module
        self.helpers: set[str] = set()  # local names of DRIVER_HELPERS
        tree = ast.parse(path.read_text())
        self.docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        self.visit(tree)

    def where(self) -> str:
        return f"{self.path}::{'.'.join(self.scope)}" if self.scope else self.path

    def add(self, node: ast.AST, what: str) -> None:
        self.found.append((self.where(), f"line {getattr(node, 'lineno', '?')}: {what}"))

    def scoped(self, node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_ClassDef = visit_FunctionDef = visit_AsyncFunctionDef = scoped

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            root = alias.name.split(".")[0]
            if root in {"sqlalchemy", "sqlmodel"}:
                self.modules.add(alias.asname or root)
            elif root == "asyncpg":
                self.asyncpg.add(alias.asname or root)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        for alias in node.names:
            if module.split(".")[0] in {"sqlalchemy", "sqlmodel"}:
                self.names[alias.asname or alias.name] = alias.name
            elif alias.name in DRIVER_HELPERS:
                self.helpers.add(alias.asname or alias.name)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        root = func
        while isinstance(root, ast.Attribute):
            root = root.value
        if isinstance(func, ast.Name):
            if self.names.get(func.id) in BUILDERS:
                self.add(node, f"{func.id}(")
            if func.id in self.helpers:
                self.driver.append((self.where(), f"line {node.lineno}: {func.id}("))
        elif isinstance(func, ast.Attribute) and isinstance(root, ast.Name):
            if self.names.get(root.id) == "func":
                self.add(node, f"{root.id}.…(")
            first = func
            while isinstance(first.value, ast.Attribute):
                first = first.value
            if root.id in self.modules and first.attr in BUILDERS:
                self.add(node, f"{root.id}.{first.attr}(")
            if root.id in self.asyncpg and func.attr == "connect":
                self.driver.append((self.where(), f"line {node.lineno}: asyncpg.connect("))
        if isinstance(func, ast.Attribute) and func.attr in RUNNERS:
            handle = func.value
            name = handle.attr if isinstance(handle, ast.Attribute) else getattr(handle, "id", "")
            if HANDLE.search(name):
                self.add(node, f"{name}.{func.attr}(")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr == "driver_connection" and not isinstance(node.ctx, ast.Store):
            self.driver.append((self.where(), f"line {node.lineno}: .driver_connection"))
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if (
            isinstance(node.value, str)
            and id(node) not in self.docstrings
            and SQL_TEXT.match(node.value)
        ):
            self.add(node, f"SQL text {node.value.strip()[:40]!r}")


def service_modules() -> list[Path]:
    return sorted((ROOT / "services").rglob("*.py"))


def covered(where: str, allowed: dict[str, str]) -> str | None:
    """The entry of `allowed` that covers `where` (a path or path::qualified.name)."""
    path, _, qualname = where.partition("::")
    for entry in allowed:
        glob, _, function = entry.partition("::")
        if fnmatch(path, glob) and (
            not function or qualname == function or qualname.startswith(f"{function}.")
        ):
            return entry
    return None


def test_sql_only_in_repositories() -> None:
    offenders = [
        f"{where}: {what}"
        for path in service_modules()
        if not is_repository(path)
        for where, what in SqlFinder(path).found
        if covered(where, SQL_ELSEWHERE) is None
    ]
    assert not offenders, (
        "SQL outside a repository module (docs/DECISIONS.md, Foundation, 'SQL lives in "
        "repositories'): move it into the concern's repository.py, or list it in SQL_ELSEWHERE "
        "with its reason:\n" + "\n".join(offenders)
    )


def test_asyncpg_only_on_the_named_hot_paths() -> None:
    offenders = [
        f"{where}: {what}"
        for path in service_modules()
        for where, what in SqlFinder(path).driver
        if covered(where, DRIVER_SQL) is None
    ]
    assert not offenders, (
        "asyncpg reached directly outside the named hot paths: use the session (ORM or "
        "text()), or measure and add the path to DRIVER_SQL and DECISIONS:\n" + "\n".join(offenders)
    )


def test_every_sql_exception_is_still_needed() -> None:
    used: set[str] = set()
    for path in service_modules():
        finder = SqlFinder(path)
        for where, _ in finder.found:
            if not is_repository(path) and (entry := covered(where, SQL_ELSEWHERE)):
                used.add(entry)
        for where, _ in finder.driver:
            if entry := covered(where, DRIVER_SQL):
                used.add(entry)
    stale = sorted((set(SQL_ELSEWHERE) | set(DRIVER_SQL)) - used)
    assert not stale, f"no longer needed, remove from SQL_ELSEWHERE / DRIVER_SQL: {stale}"
