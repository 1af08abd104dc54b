"""The house as its imports draw it: arrows point down, the demo wing stands apart, files and functions stay short."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("corpus", "crawlers", "curation", "labeling", "training", "pipelines")
# What each package may import from the project (besides itself).
ALLOWED = {
    "corpus": set(),
    "crawlers": {"corpus"},
    "curation": {"corpus"},
    "labeling": {"corpus"},
    "training": {"corpus"},
    "pipelines": {"corpus", "crawlers", "curation", "labeling", "training"},
    "pipelines.demo": {"corpus", "crawlers", "curation", "labeling", "training", "pipelines"},
}
# corpus is the floor every layer stands on: it must not drag in the heavy, service-bound libraries.
CORPUS_FORBIDDEN = ("prefect", "scrapy", "twisted", "torch", "label_studio_sdk", "albumentations", "cv2")
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80


def _product_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def _owner(module: str) -> str | None:
    """The layout unit a module belongs to: the demo wing, or its top-level package."""
    if module == "pipelines.demo" or module.startswith("pipelines.demo."):
        return "pipelines.demo"
    top = module.split(".")[0]
    return top if top in PACKAGES else None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in _product_files():
        module = _module_of(path)
        for name in _imports(path):
            target = _owner(name)
            if target is not None and target != _owner(module):
                graph[module].add(target)
    return graph


def test_arrows_point_down_and_the_demo_wing_is_imported_by_the_cli_only() -> None:
    """pipelines -> {crawlers, curation, labeling, training} -> corpus; the demo wing only from the CLI modules."""
    wrong = []
    for module, targets in _graph().items():
        owner = _owner(module)
        for target in targets:
            if target == "pipelines.demo" and module.startswith("pipelines.cli"):
                continue  # the command line (pipelines/cli*.py) starts the demo and its local services
            if target not in ALLOWED[owner]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, f"imports against the layout: {sorted(wrong)}"


def test_no_module_import_circle() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    modules = {_module_of(p) for p in _product_files()}
    for path in _product_files():
        for name in _imports(path):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != _module_of(path):
                edges[_module_of(path)].add(name)
    state: dict[str, int] = {}
    circle: list[str] = []

    def visit(node: str, trail: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                circle.extend([*trail, node, nxt])
                return True
            if state.get(nxt) is None and visit(nxt, [*trail, node]):
                return True
        state[node] = 2
        return False

    assert not any(visit(m, []) for m in sorted(modules) if state.get(m) is None), " -> ".join(circle)


def test_corpus_imports_no_service_library() -> None:
    found = {
        str(path.relative_to(REPO)): sorted(n for n in _imports(path) if n.split(".")[0] in CORPUS_FORBIDDEN)
        for path in (REPO / "corpus").rglob("*.py")
    }
    assert not {k: v for k, v in found.items() if v}


@pytest.mark.parametrize("path", _product_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_files_and_functions_stay_short_enough_to_read(path: Path) -> None:
    lines = path.read_text().count("\n")
    assert lines <= MAX_FILE_LINES, f"{path.name}: {lines} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{path.name}: {long}"


def test_every_module_says_what_it_owns() -> None:
    silent = [
        str(p.relative_to(REPO))
        for p in _product_files()
        if p.stat().st_size and not ast.get_docstring(ast.parse(p.read_text()))
    ]
    assert not silent
