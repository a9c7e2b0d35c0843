"""The import graph keeps DESIGN.md's dependency direction: read from the source (parsed, never imported).

- Core modules (all of ``evalsuite/`` but the application layer: ``evalsuite/cli*``,
  ``evalsuite/service/``, ``evalsuite/distributed/``) never import ``metrics``, ``proxies`` or
  ``dashboards``, not even lazily inside a function: they reach metrics through the registry's strings.
- No module-level import cycle among ``evalsuite``, ``metrics``, ``proxies`` and ``dashboards``.

Imports under ``if TYPE_CHECKING:`` never run and are not counted. Imports inside functions and methods
are deliberate lazy imports: they do not make cycles, but they are still dependencies for the core rule.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("evalsuite", "metrics", "proxies", "dashboards")
UPPER_LAYERS = frozenset({"metrics", "proxies", "dashboards"})


@dataclass(frozen=True)
class Import:
    importer: str  # the importing module
    target: str  # the absolute dotted name imported (a module, or the module holding the name)
    path: Path
    line: int
    module_level: bool  # runs when the importer is imported (not inside a function or method)

    def where(self, root: Path) -> str:
        return f"{self.path.relative_to(root)}:{self.line}"


def module_files(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """``{dotted module name: file}``; a package's ``__init__.py`` is the package itself."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(
    body: list[ast.stmt], module_level: bool
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement of ``body`` with whether it runs at import time of the module; the body
    of ``if TYPE_CHECKING:`` is skipped (its ``else`` runs), function bodies are lazy, class bodies run."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, module_level
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _import_nodes(node.orelse, module_level)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _import_nodes(node.body, False)
        else:
            # if / try / with / for / while / match / class bodies: walk their statement lists.
            for name in ("body", "orelse", "finalbody", "handlers", "cases"):
                children = getattr(node, name, None)
                if not isinstance(children, list):
                    continue
                for child in children:
                    if isinstance(child, ast.ExceptHandler | ast.match_case):
                        yield from _import_nodes(child.body, module_level)
                if children and isinstance(children[0], ast.stmt):
                    yield from _import_nodes(children, module_level)


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """The imports of one module, resolved to absolute names; ``from x import y`` names the submodule
    ``x.y`` when there is one, else ``x``."""
    is_package = path.name == "__init__.py"
    found: list[Import] = []
    for node, module_level in _import_nodes(ast.parse(path.read_text(), str(path)).body, True):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
            ]
        found.extend(
            Import(module, target, path, node.lineno, module_level) for target in dict.fromkeys(targets)
        )
    return found


def module_graph(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, dict[str, Import]]:
    """Module-level import edges between the modules of ``packages``: ``{importer: {imported: import}}``.

    Importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` first, so the edge goes to each of
    those packages too, except the importer's own packages (``a`` and ``a.b`` when the importer is
    ``a.b.d``). Python always initialises a module's packages before the module itself, so by the time
    ``a.b.d`` imports a sibling, ``a.b`` is already in ``sys.modules`` and nothing is re-entered: an edge
    back to it would only turn every ``__init__.py`` that re-exports its own submodules into a false
    cycle. A submodule that really needs a name from its package's ``__init__`` writes
    ``from a.b import name`` (or ``import a.b``), which is an explicit edge and is counted. Edges into
    *other* packages are kept: ``evalsuite.api`` importing ``evalsuite.run.engines`` runs
    ``evalsuite/run/__init__.py``, and if that imports ``evalsuite.api`` the cycle is real.
    """
    modules = module_files(root, packages)
    graph: dict[str, dict[str, Import]] = {module: {} for module in modules}
    for module, path in modules.items():
        own = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 2)}
        for imported in imports_of(module, path, modules):
            if not imported.module_level:
                continue
            parts = imported.target.split(".")
            for i in range(1, len(parts) + 1):
                name = ".".join(parts[:i])
                implicit = i < len(parts)
                if name in modules and name != module and not (implicit and name in own):
                    graph[module].setdefault(name, imported)
    return graph


def strongly_connected(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative), each sorted; only those of size > 1."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return sorted(components)


def a_cycle(graph: dict[str, dict[str, Import]], component: list[str]) -> list[str]:
    """One shortest cycle through the component's first module (breadth-first, inside the component)."""
    members, start = set(component), component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child in members and child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover: a component always has one


def cycle_report(root: Path, graph: dict[str, dict[str, Import]]) -> list[str]:
    reports = []
    for component in strongly_connected(graph):
        cycle = a_cycle(graph, component)
        steps = [f"{a} ({graph[a][b].where(root)}) -> {b}" for a, b in itertools.pairwise(cycle)]
        reports.append(
            f"import cycle among {len(component)} modules ({', '.join(component)}):\n    "
            + "\n    ".join(steps)
        )
    return reports


def is_core(module: str) -> bool:
    """Everything under ``evalsuite/`` but the application layer (``cli*``, ``service/``, ``distributed/``)."""
    parts = module.split(".")
    if parts[0] != "evalsuite":
        return False
    if len(parts) == 1:
        return True
    top = parts[1]
    return not (top == "cli" or top.startswith("cli_") or top in ("service", "distributed"))


def core_violations(root: Path, packages: tuple[str, ...] = PACKAGES) -> list[str]:
    modules = module_files(root, packages)
    violations = []
    for module, path in modules.items():
        if not is_core(module):
            continue
        for imported in imports_of(module, path, modules):
            if imported.target.split(".")[0] in UPPER_LAYERS:
                when = "at import time" if imported.module_level else "inside a function"
                violations.append(
                    f"{imported.where(root)}: core module {module} imports {imported.target} ({when}); "
                    "reach metrics through the registry's strings, or move the code to the application layer"
                )
    return violations


def test_core_never_imports_metrics_proxies_or_dashboards() -> None:
    violations = core_violations(ROOT)
    assert not violations, "\n".join(violations)


def test_no_module_level_import_cycles() -> None:
    cycles = cycle_report(ROOT, module_graph(ROOT))
    assert not cycles, "\n".join(cycles)


# -- the checks themselves, on small trees --------------------------------------------------------------


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in PACKAGES:
        (root / package).mkdir(exist_ok=True)
    return root


def test_core_rule_counts_lazy_imports_but_not_type_checking_ones(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "evalsuite/__init__.py": "",
            "evalsuite/engine.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from metrics.a import A\n"
                "def run():\n    from metrics.a import A\n    return A\n"
            ),
            "evalsuite/records/__init__.py": "try:\n    import proxies\nexcept ImportError:\n    pass\n",
            "evalsuite/records/io.py": "from ..cli_common import x\nfrom .. import errors\n",
            "evalsuite/cli_common.py": "import dashboards.app\n",
            "evalsuite/cli/__init__.py": "from proxies import command\n",
            "evalsuite/service/app.py": "import metrics\n",
            "evalsuite/client.py": "import typing\n",
            "metrics/__init__.py": "",
            "metrics/a.py": "from evalsuite.errors import E\n",
        },
    )
    assert core_violations(root) == [
        "evalsuite/engine.py:5: core module evalsuite.engine imports metrics.a (inside a function); "
        "reach metrics through the registry's strings, or move the code to the application layer",
        "evalsuite/records/__init__.py:2: core module evalsuite.records imports proxies (at import time); "
        "reach metrics through the registry's strings, or move the code to the application layer",
    ]


def test_cycles_are_found_without_false_ones_from_packages(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            # A package re-exporting its submodules, which import each other's modules: no cycle.
            "proxies/__init__.py": "from proxies.persistence import save\nfrom proxies.predictor import P\n",
            "proxies/persistence.py": "from proxies.predictor import P\n",
            "proxies/predictor.py": "import numpy\nclass P:\n    def save(self):\n        from proxies import persistence\n",
            # A lazy face: names resolved on use, not an edge.
            "evalsuite/__init__.py": "from evalsuite._lazy import lazy\n",
            "evalsuite/_lazy.py": "",
            "evalsuite/errors.py": "",
            # A relative import cycle between modules, closed through a try block and a class body.
            "evalsuite/run/__init__.py": "from .engine import Engine\n",
            "evalsuite/run/engine.py": "try:\n    from ..api import Scorer\nexcept ImportError:\n    raise\n",
            "evalsuite/api.py": "class Scorer:\n    from evalsuite.run.engine import Engine\n",
            # A module importing a package whose __init__ imports the module back: a real cycle.
            "metrics/__init__.py": "from metrics.base import Metric\n",
            "metrics/base.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import dashboards\n",
            "dashboards/__init__.py": "from dashboards.views import page\n",
            "dashboards/views.py": "from dashboards.data import load\n",
            "dashboards/data.py": "import metrics.base\n",
            "metrics/bleu.py": "from dashboards.views import page\n",
        },
    )
    graph = module_graph(root)
    assert "proxies" not in graph["proxies.persistence"]  # its own package: no implicit edge
    assert set(graph["metrics.bleu"]) == {"dashboards", "dashboards.views"}  # another package: one
    assert "dashboards" not in graph["metrics.base"]  # TYPE_CHECKING
    assert strongly_connected(graph) == [["evalsuite.api", "evalsuite.run", "evalsuite.run.engine"]]
    (report,) = cycle_report(root, graph)
    assert report == (
        "import cycle among 3 modules (evalsuite.api, evalsuite.run, evalsuite.run.engine):\n"
        "    evalsuite.api (evalsuite/api.py:2) -> evalsuite.run.engine\n"
        "    evalsuite.run.engine (evalsuite/run/engine.py:2) -> evalsuite.api"
    )
    # An eager package face that imports an upper layer closes a cycle through its packages.
    (root / "evalsuite/__init__.py").write_text("from evalsuite.api import Scorer\nimport metrics.bleu\n")
    (root / "dashboards/data.py").write_text("from evalsuite.errors import E\n")
    components = strongly_connected(module_graph(root))
    assert ["dashboards", "dashboards.data", "dashboards.views", "evalsuite", "metrics.bleu"] in components


@pytest.mark.parametrize(
    ("importer", "source", "expected"),
    [
        ("evalsuite/x.py", "from . import errors", "evalsuite.errors"),
        ("evalsuite/x.py", "from .errors import E", "evalsuite.errors"),
        ("evalsuite/records/reader.py", "from ..records import writers", "evalsuite.records.writers"),
        ("evalsuite/records/__init__.py", "from .writers import w", "evalsuite.records.writers"),
        ("evalsuite/records/__init__.py", "from . import writers", "evalsuite.records.writers"),
        ("evalsuite/x.py", "from evalsuite.records import write_table", "evalsuite.records"),
        ("evalsuite/x.py", "import evalsuite.records.writers as w", "evalsuite.records.writers"),
    ],
)
def test_imports_resolve_to_modules(tmp_path: Path, importer: str, source: str, expected: str) -> None:
    files = {"evalsuite/__init__.py": "", "evalsuite/errors.py": "", "evalsuite/records/__init__.py": ""}
    write_tree(tmp_path, {**files, "evalsuite/records/writers.py": "", importer: source + "\n"})
    modules = module_files(tmp_path)
    module = next(name for name, path in modules.items() if path == tmp_path / importer)
    (imported,) = imports_of(module, tmp_path / importer, modules)
    assert imported.target == expected
