"""The layout of `shared/` shows its architecture, and imports flow one way: entry points -> steps
-> per-scope Graph calls -> stores, Graph client and pacing -> domain -> foundations."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT / "shared"
# lowest first; a module may import its own package and any package of a lower layer
LAYERS = [
    {"foundation"},
    {"domain"},
    {"graph", "pacing", "stores"},
    {"scopes"},
    {"steps"},
    {"automatic"},
    {"bootstrap"},
    {"http", "queues"},
]
RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "shared" and len(parts) > 1 else None


def imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found += [node.module] + [f"{node.module}.{a.name}" for a in node.names if node.module == "shared"]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return found


def test_every_module_belongs_to_a_layer():
    packages = {p.relative_to(SHARED).parts[0].removesuffix(".py") for p in SHARED.rglob("*.py")} - {"__init__"}
    assert packages == set(RANK), f"not in a layer: {sorted(packages - set(RANK))}; missing: {sorted(set(RANK) - packages)}"


def test_imports_flow_one_way():
    wrong = []
    for path in SHARED.rglob("*.py"):
        own = path.relative_to(SHARED).parts[0].removesuffix(".py")
        if own == "__init__":
            continue
        for module in imports(path):
            used = package_of(module)
            if used is None or used == own or used == "__init__":
                continue
            if RANK[used] >= RANK[own]:
                wrong.append(f"{path.relative_to(ROOT)} ({own}) imports {module} ({used})")
    assert not wrong, "\n".join(wrong)


def test_the_domain_does_no_io():
    """The model imports no storage, HTTP or Graph client library."""
    io = ("requests", "azure.data", "azure.storage", "azure.identity", "azure.functions", "azure.core")
    for path in (SHARED / "domain").rglob("*.py"):
        used = [m for m in imports(path) if m.startswith(io)]
        assert not used, f"{path.relative_to(ROOT)} imports {used}"


def test_no_module_or_class_outgrows_its_job():
    for path in SHARED.rglob("*.py"):
        tree = ast.parse(path.read_text())
        lines = len(path.read_text().splitlines())
        assert lines <= 400, f"{path.relative_to(ROOT)} has {lines} lines"
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                size = node.end_lineno - node.lineno + 1
                assert size <= 250, f"{path.relative_to(ROOT)}: class {node.name} has {size} lines"
