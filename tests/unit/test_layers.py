"""The layout of `shared/` shows its architecture, and imports flow one way: entry points (http,
queues) -> the composition root -> automatic triggers -> control steps -> batches -> steering ->
starting runs -> the typed services -> fan-out to the queues -> per-scope Graph calls -> stores,
Graph client and pacing -> domain -> foundations."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared"
# lowest first; a module may import its own package and any package of a lower layer
LAYERS = [
    {"foundation"},
    {"domain"},
    {"graph", "pacing", "stores"},
    {"scopes"},
    {"fanout"},
    {"services"},
    {"runs"},
    {"steering"},
    {"batches"},
    {"steps"},
    {"automatic"},
    {"bootstrap"},
    {"http", "queues"},
]
RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "shared" and len(parts) > 1 and not parts[1].startswith("__") else None


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


def test_no_module_state_but_the_composition_roots():
    """Long-lived objects (pools, caches, validators, averages) belong to the services a process
    builds once, not to module globals: a module-level name bound to a mutable object or a
    `global` statement is allowed only in bootstrap."""
    mutable_calls = {"dict", "list", "set", "OrderedDict", "deque", "Counter", "ThreadPoolExecutor", "Lock", "RLock",
                     "Semaphore", "BoundedSemaphore", "Event", "Condition", "Average", "TokenValidator"}  # fmt: skip
    found = []
    for path in SHARED.rglob("*.py"):
        if path.name == "bootstrap.py":
            continue
        tree = ast.parse(path.read_text())
        for node in tree.body:
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            if isinstance(value, (ast.Dict, ast.List, ast.Set)) and not _is_constant_table(node):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if isinstance(value, ast.Call):
                name = value.func.attr if isinstance(value.func, ast.Attribute) else getattr(value.func, "id", "")
                if name in mutable_calls and not (name in ("dict", "list", "set") and _is_constant_table(node)):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}()")
        found += [f"{path.relative_to(ROOT)}:{n.lineno} global" for n in ast.walk(tree) if isinstance(n, ast.Global)]
    assert not found, found


def _is_constant_table(node: ast.Assign | ast.AnnAssign) -> bool:
    """UPPER_CASE tables (dispatch tables, lookups) are constants by convention; nothing mutates them."""
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return all(isinstance(t, ast.Name) and t.id.isupper() for t in targets)
