"""House rules that keep the layers apart, checked on the source itself."""

from __future__ import annotations

import ast
import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("layer", ["models", "service", "extensions"])
def test_model_and_service_code_never_import_the_ui(layer):
    """Gradio only in an extension's panel module (its part of the tabs), never in the service or the models."""
    for path in (ROOT / layer).rglob("*.py"):
        ui = {"ui", "app"} if layer == "extensions" and path.name == "panel.py" else {"gradio", "ui", "app"}
        assert not imported_modules(path) & ui, path


def test_importing_the_app_does_nothing():
    """No model load, argv parsing or device probing at import time (house habit 1)."""
    code = "import sys, app; assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


# The project's top-level packages and what each may import of the others. The app's layers, top to bottom:
# app -> ui, api -> service -> extensions -> models, each importing only layers below it (ui and api never each
# other). Around them, code the app never imports: training (the demo model's dataset and training scripts),
# testing (fixtures of the tests and bench), bench and tests.
APP_LAYERS = {
    "models": set(),
    "extensions": {"models"},
    "service": {"extensions", "models"},
    "ui": {"service", "extensions", "models"},
    "api": {"service", "extensions", "models"},
    "app": {"ui", "api", "service", "extensions", "models"},
}
MAY_IMPORT = {
    **APP_LAYERS,
    "training": {"service", "extensions", "models"},
    "testing": {"training", "service", "extensions", "models"},
    "bench": {"testing", "training", *APP_LAYERS},
    "tests": {"bench", "testing", "training", *APP_LAYERS},
}


def top_level_packages() -> set[str]:
    """The project's importable top-level names: the packages (folders with __init__.py) and modules at ROOT."""
    return {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()} | {p.stem for p in ROOT.glob("*.py")}


def package_files(package: str) -> list[Path]:
    return [ROOT / f"{package}.py"] if (ROOT / f"{package}.py").is_file() else sorted((ROOT / package).rglob("*.py"))


@functools.cache
def project_imports(path: Path) -> tuple[tuple[str, int], ...]:
    """(top-level project package, line) for each import in `path`, at module level or inside a function; a
    relative import stays in the file's own package."""
    own = path.relative_to(ROOT).parts[0].removesuffix(".py")
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((own if node.level else node.module.split(".")[0], node.lineno))
    return tuple((name, line) for name, line in found if name in MAY_IMPORT)


@functools.cache
def package_graph() -> dict[str, dict[str, str]]:
    """{package: {imported package: the first place it is imported, as file:line}} over the whole project."""
    graph = {package: {} for package in MAY_IMPORT}
    for package in MAY_IMPORT:
        for path in package_files(package):
            for name, line in project_imports(path):
                if name != package:
                    graph[package].setdefault(name, f"{path.relative_to(ROOT)}:{line}")
    return graph


def test_every_top_level_package_has_a_place_in_the_layers():
    assert top_level_packages() == set(MAY_IMPORT), (
        f"new top-level packages {sorted(top_level_packages() - set(MAY_IMPORT))} need a place in MAY_IMPORT; "
        f"gone: {sorted(set(MAY_IMPORT) - top_level_packages())}")


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_packages_import_only_what_their_layer_allows(package):
    """The app's layers import only layers below them, and never training, testing, bench or tests; bench and
    testing take nothing from tests."""
    allowed = f"only {', '.join(sorted(MAY_IMPORT[package]))}" if MAY_IMPORT[package] else "no other project package"
    broken = [
        f"{path.relative_to(ROOT)}:{line} imports {name}, but {package} may import {allowed}"
        for path in package_files(package)
        for name, line in project_imports(path)
        if name != package and name not in MAY_IMPORT[package]
    ]
    assert not broken, "\n".join(broken)


def test_no_import_cycle_between_top_level_packages():
    graph = package_graph()

    def reachable(package: str) -> set[str]:
        seen, todo = set(), [package]
        while todo:
            for imported in graph[todo.pop()]:
                if imported not in seen:
                    seen.add(imported)
                    todo.append(imported)
        return seen

    def shortest_cycle(start: str) -> list[str]:
        paths, todo = {start: [start]}, [start]
        while todo:
            package = todo.pop(0)
            for imported in sorted(graph[package]):
                if imported == start:
                    return paths[package] + [start]
                if imported not in paths:
                    paths[imported] = paths[package] + [imported]
                    todo.append(imported)
        return []

    reach = {package: reachable(package) for package in graph}
    # packages that reach each other import each other in a cycle: each such group once, with one of its loops
    groups = sorted({frozenset(q for q in reach[p] if p in reach[q]) for p in graph if p in reach[p]}, key=sorted)
    found = []
    for group in groups:
        loop = shortest_cycle(min(group))
        steps = " ".join(f"{a} ({graph[a][b]} imports {b}) ->" for a, b in zip(loop, loop[1:]))
        found.append(f"{', '.join(sorted(group))} import each other, e.g. {steps} {loop[-1]}")
    assert not found, "import cycles between top-level packages:\n" + "\n".join(found)


def test_the_request_model_loads_no_torch():
    """models.request (what every interface builds a generation from) is plain data: importing it loads no torch."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "import models.request"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    # "import time:   self |   cumulative | <two spaces per nesting level>module"; a module's line comes after
    # those of the modules it imported, so the lines after torch's that are less indented are what imported it.
    lines = [(len(m[1]) - len(m[1].lstrip()), m[1].strip())
             for m in re.finditer(r"^import time:[^|]*\|[^|]*\|(.*)$", result.stderr, re.MULTILINE)]
    torch_at = next((i for i, (_, name) in enumerate(lines) if name.split(".")[0] == "torch"), None)
    if torch_at is not None:
        chain, depth = [lines[torch_at][1]], lines[torch_at][0]
        for indent, name in lines[torch_at + 1:]:
            if indent < depth:
                chain.append(name)
                depth = indent
        pytest.fail("importing models.request loads torch: " + " <- ".join(chain))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_project_modules(path: Path, known: set[str]) -> set[str]:
    """The project modules `path` imports, at module level or inside a function: `from a.b import c` is a.b.c when
    that is a module, else a.b (a package's own implicit import of its parents is not counted)."""
    own = module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {name for name in found if name in known and name != own}


def test_no_import_cycle_between_any_two_modules():
    """Within packages too: an extension's panel.py and its extension.py, say, never import each other (a lazy
    import inside a function counts)."""
    paths = {module_name(path): path for package in MAY_IMPORT for path in package_files(package)}
    graph = {name: imported_project_modules(path, set(paths)) for name, path in paths.items()}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(start: str) -> None:  # Tarjan's strongly connected components, iteratively (no recursion limit)
        work = [(start, iter(sorted(graph[start])))]
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
                    cycles.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    described = [f"{', '.join(group)}: " + "; ".join(f"{a} imports {b}" for a in group for b in sorted(graph[a])
                                                       if b in group) for group in cycles]
    assert not cycles, "modules that import each other (through these imports):\n" + "\n".join(described)
