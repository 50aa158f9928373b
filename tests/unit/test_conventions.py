"""The house rules that a reviewer would otherwise have to remember, read from the source itself.

- The layering of ARCHITECTURE (README, "Code layout"): each package imports only the packages
  below it; stage/ and ckpt/ share code through client/ and store/'s public seam, never each
  other's modules.
- Every module says what it is for (a docstring) and, where other modules import from it, what it
  exports (``__all__``); a module imports from another only names that one exports.
- Each test module of tests/unit sits at the path of the module it tests.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aif_gateway

PACKAGE = Path(aif_gateway.__file__).parent
NATIVE_SOURCES = PACKAGE.parent / "native"
TESTS = Path(__file__).parent

# What each part may import from the package (besides itself). Top-level modules (config,
# identity, errors, checksums, awsv4, ...) are named one by one: "(top)" lists the ones every
# part may use, the entries of a part add to it.
SHARED_TOP = {"errors", "checksums", "awsv4", "lazy_exports"}
MAY_IMPORT: dict[str, set[str]] = {
    "fsio": {"_native"},
    "store": {"fsio"},
    "s3": {"store", "fsio", "config", "identity", "posix_ids"},
    "client": {"fsio"},
    "stage": {"client", "fsio"},
    "ckpt": {"client", "fsio", "store.direct"},
}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted
    target: str  # the imported module, dotted
    names: tuple[str, ...]  # names taken from it ((): the module itself)
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _imports(path: Path) -> Iterator[Import]:
    source = _module_name(path)
    package = source if path.name == "__init__.py" else source.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("aif_gateway"):
                continue
            names = []
            for alias in node.names:
                if f"{target}.{alias.name}" in MODULES or alias.name == "_native":
                    yield Import(source, f"{target}.{alias.name}", (), node.lineno)
                else:
                    names.append(alias.name)
            if names:
                yield Import(source, target, tuple(names), node.lineno)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("aif_gateway."):
                    yield Import(source, alias.name, (), node.lineno)


def _part(module: str) -> str:
    """'aif_gateway.store.meta' -> 'store'; a top-level module is its own name."""
    return module.split(".")[1] if module.count(".") >= 1 else ""


def _allowed(source: str, target: str) -> bool:
    part, target_part = _part(source), _part(target)
    if not (PACKAGE / part).is_dir():
        return True  # the top-level modules (cli, server, config...) put the parts together
    if target_part == part or target_part in SHARED_TOP:
        return True
    allowed = MAY_IMPORT[part]
    below = target.removeprefix("aif_gateway.")
    return target_part in allowed or any(below == a or below.startswith(a + ".") for a in allowed)


def test_each_part_imports_only_what_lies_below_it() -> None:
    wrong = [
        f"{imp.source}:{imp.line} imports {imp.target}"
        for path in MODULES.values()
        for imp in _imports(path)
        if not _allowed(imp.source, imp.target)
    ]
    assert not wrong, "\n".join(wrong)


def test_no_two_modules_import_each_other_even_indirectly() -> None:
    # Imports inside functions and under TYPE_CHECKING count too: a cycle hidden there still
    # means neither module can be read, tested or moved without the other.
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for path in MODULES.values():
        for imp in _imports(path):
            src, dst = imp.source, imp.target
            if dst in MODULES and dst != src and not src.startswith(dst + ".") and not dst.startswith(src + "."):
                graph[src].add(dst)
    cycles = [component for component in _strongly_connected(graph) if len(component) > 1]
    assert not cycles, cycles


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively (no recursion limit to meet)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
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
                found.append(component)
    return found


def test_the_layering_table_names_every_part() -> None:
    parts = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert parts == set(MAY_IMPORT)


def _exports(name: str) -> list[str] | None:
    for node in ast.parse(MODULES[name].read_text()).body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            if isinstance(node.value, (ast.List, ast.Tuple)):
                return [ast.literal_eval(e) for e in node.value.elts]
            return list(importlib.import_module(name).__all__)  # computed (the lazy packages)
    return None


def test_every_module_says_what_it_is_for() -> None:
    missing = [
        name
        for name, path in MODULES.items()
        if path.name != "__main__.py" and ast.get_docstring(ast.parse(path.read_text())) is None
    ]
    assert not missing, missing


def test_modules_import_from_each_other_only_what_is_exported() -> None:
    wrong = []
    for path in MODULES.values():
        for imp in _imports(path):
            if not imp.names or imp.target not in MODULES or imp.target == imp.source:
                continue
            exported = _exports(imp.target)
            for name in imp.names:
                if exported is None or name not in exported:
                    wrong.append(f"{imp.source}:{imp.line} takes {name} from {imp.target}, which does not export it")
    assert not wrong, "\n".join(wrong)


def test_no_module_keeps_a_hand_written_export_list() -> None:
    # `__all__` says what a module exports; a "Public API" paragraph in its docstring drifts.
    stale = [
        name for name, path in MODULES.items() if "Public API" in (ast.get_docstring(ast.parse(path.read_text())) or "")
    ]
    assert not stale, stale


def _tested_module(test: Path) -> str:
    """The module a unit test tests, by its path: tests/unit/store/test_meta_fuzz.py tests
    aif_gateway/store/meta.py (the longest run of words that names a module), and
    tests/unit/native/test_listing.py tests native/listing.c, the C extension's source."""
    folder = test.parent.relative_to(TESTS).parts
    words = test.stem.removeprefix("test_").split("_")
    for end in range(len(words), 0, -1):
        stem = "_".join(words[:end])
        if folder[:1] == ("native",):
            if (NATIVE_SOURCES / f"{stem}.c").exists():
                return f"native/{stem}.c"
        elif (name := ".".join(("aif_gateway", *folder, stem))) in MODULES and MODULES[name].name != "__init__.py":
            return name
    return ""


def test_each_unit_test_sits_at_the_path_of_the_module_it_tests() -> None:
    misplaced = [
        str(t.relative_to(TESTS))
        for t in sorted(TESTS.rglob("test_*.py"))
        if t != Path(__file__) and not _tested_module(t)
    ]
    assert not misplaced, f"no module at these tests' paths: {misplaced}"
