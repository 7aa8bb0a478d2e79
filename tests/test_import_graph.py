"""Import scan over ``spurious_diag/``: no import cycle between modules, and layers that point down.

What counts as an edge ``A -> B`` (A, B modules of the package; everything else is ignored):

* every ``import`` statement anywhere in A's file: module level, inside functions and
  methods, under ``if TYPE_CHECKING:``, inside ``try``/``except``. A cycle closed by a
  function-local or type-only import is still a cycle: it is only hidden until the
  function runs or a type checker follows it, and it blocks moving either module;
* ``from P import name`` goes to ``P.name`` when that is a module, else to ``P`` (so
  ``from .. import __version__`` is an edge to the root package). Relative imports
  resolve against A's package, which for an ``__init__.py`` is A itself;
* ``lazy_loader.attach(__name__, submod_attrs={...}, submodules=[...])`` in a package:
  one edge to each named submodule, as the attribute access would import it.

Not an edge: the implicit import of B's parent packages. Importing
``spurious_diag.errors`` does run ``spurious_diag/__init__.py``, but counting that would
turn every lazy export of a package into a cycle with its own submodules.
"""

from __future__ import annotations

import ast
import fnmatch
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "spurious_diag"
ROOT = "spurious_diag"


def under(*names: str) -> tuple[str, ...]:
    """Patterns for each module and everything below it."""
    return tuple(p for n in names for p in (f"{ROOT}.{n}", f"{ROOT}.{n}.*"))


ANY = (ROOT, f"{ROOT}.*")
LOWER_THAN_IO = under("updates", "probes", "training", "freeze", "continual", "biography", "plots", "report", "cli")

# (why, importers, importers exempt, targets, targets exempt): fnmatch patterns over module
# names. An edge breaks a rule when its importer matches `importers` but not the importer
# exemptions and its target matches `targets` but not the target exemptions. Patterns that
# match no module yet (the restructuring is in progress) simply match nothing.
LAYER_RULES: list[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = [
    ("only the CLI (and __main__) imports the CLI", ANY, under("cli") + (f"{ROOT}.__main__",), under("cli"), ()),
    ("report is imported only by the CLI and the Biography demo", ANY,
     under("cli", "biography.demo", "report"), under("report"), ()),
    ("the Biography demo is imported only by the CLI", ANY, under("cli", "biography.demo"), under("biography.demo"), ()),
    ("the method comparison is imported only by the CLI, its report and the root's exports", ANY,
     under("cli", "report", "comparison") + (ROOT,), under("comparison"), ()),
    ("geometry imports nothing of the package outside geometry", under("geometry"), (), ANY, under("geometry")),
    ("io imports no higher layer", under("io"), (), LOWER_THAN_IO, ()),
    ("plots only read frames: they import nothing else of the package", under("plots"), (), ANY, under("plots")),
    ("the audit engine reads checkpoints: no training, probes or scenarios", under("updates"), (),
     under("training", "freeze", "continual", "probes", "biography"), ()),
    ("freezing is below the training engine", under("freeze"), (),
     under("updates", "training", "continual", "probes", "biography"), ()),
    ("the training engine knows no methods, probes or scenarios", under("training"), (),
     under("updates", "continual", "probes", "biography"), ()),
    ("continual methods know no probes or scenarios", under("continual"), (), under("probes", "biography"), ()),
    ("probes know no continual methods or scenarios", under("probes"), (), under("continual", "biography"), ()),
    ("the version lives in spurious_diag._version, not the root package", ANY, (f"{ROOT}.__main__",), (ROOT,), ()),
]


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    where: str  # "path/to/file.py:line" of the import statement


class ScanError(Exception):
    """A construct the scan cannot read statically (e.g. a non-literal lazy_loader.attach)."""


def module_names(pkg_dir: Path) -> dict[str, Path]:
    """Module name -> file for every ``*.py`` under ``pkg_dir`` (``__init__.py`` names the package)."""
    out: dict[str, Path] = {}
    for path in sorted(pkg_dir.rglob("*.py")):
        parts = [pkg_dir.name, *path.relative_to(pkg_dir).with_suffix("").parts]
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _attach_targets(call: ast.Call, module: str, where: str) -> list[str]:
    """Submodules named by a ``lazy_loader.attach(__name__, submodules, submod_attrs)`` call."""
    if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
        raise ScanError(f"{where}: lazy_loader.attach(*args/**kwargs); the import scan cannot read it")
    args = dict(zip(("package_name", "submodules", "submod_attrs"), call.args))
    args.update({k.arg: k.value for k in call.keywords if k.arg})
    name = args.get("package_name")
    if not (isinstance(name, ast.Name) and name.id == "__name__"):
        raise ScanError(f"{where}: lazy_loader.attach on a name other than __name__; the import scan cannot read it")
    targets: list[str] = []
    for key in ("submodules", "submod_attrs"):
        if key in args:
            try:
                value = ast.literal_eval(args[key])
            except (ValueError, TypeError, SyntaxError):
                raise ScanError(f"{where}: lazy_loader.attach({key}=...) is not a literal; the import scan cannot read it")
            targets += [f"{module}.{k}" for k in (value or ())]
    return targets


def module_edges(module: str, path: Path, modules: dict[str, Path], root: str, rel_to: Path) -> list[Edge]:
    """Every edge out of one module (see the module docstring for what counts)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    lazy_mods = {"lazy_loader"}  # names bound to the lazy_loader module / its attach function
    lazy_funcs: set[str] = set()
    out: list[Edge] = []

    def add(target: str, line: int) -> None:
        if target == root or target.startswith(root + "."):
            out.append(Edge(module, target, f"{path.relative_to(rel_to)}:{line}"))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
                if alias.name == "lazy_loader":
                    lazy_mods.add(alias.asname or alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base == "lazy_loader":
                lazy_funcs |= {a.asname or a.name for a in node.names if a.name == "attach"}
            for alias in node.names:
                add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base, node.lineno)
    for node in ast.walk(tree):  # second pass: aliases are known now
        if isinstance(node, ast.Call):
            f = node.func
            if (isinstance(f, ast.Attribute) and f.attr == "attach" and isinstance(f.value, ast.Name)
                    and f.value.id in lazy_mods) or (isinstance(f, ast.Name) and f.id in lazy_funcs):
                where = f"{path.relative_to(rel_to)}:{node.lineno}"
                for target in _attach_targets(node, module, where):
                    add(target, node.lineno)
    return list(dict.fromkeys(out))  # `from .m import a, b` is one edge


def scan(pkg_dir: Path) -> tuple[dict[str, Path], list[Edge]]:
    modules = module_names(pkg_dir)
    edges = [e for m, p in modules.items() for e in module_edges(m, p, modules, pkg_dir.name, pkg_dir.parent)]
    return modules, edges


def strongly_connected(nodes: list[str], succ: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's SCCs, iterative (no recursion limit on deep import chains)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    work: list[tuple[str, Iterator[str]]] = []
    comps: list[list[str]] = []

    def push(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        work.append((v, iter(sorted(succ[v]))))

    for start in nodes:
        if start not in index:
            push(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is None:  # v done: pass its low link up, pop its component if it is the root
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    i = stack.index(v)
                    comps.append(sorted(stack[i:]))
                    on_stack.difference_update(stack[i:])
                    del stack[i:]
            elif w not in index:
                push(w)
            elif w in on_stack:
                low[v] = min(low[v], index[w])
    return comps


def cycles(modules: dict[str, Path], edges: list[Edge]) -> list[tuple[list[str], list[Edge]]]:
    """Each SCC of more than one module (or with a self-loop), with the edges inside it."""
    succ: dict[str, set[str]] = defaultdict(set)
    for e in edges:
        succ[e.src].add(e.dst)
    found = []
    for comp in strongly_connected(sorted(modules), succ):
        inside = [e for e in edges if e.src in comp and e.dst in comp]
        if len(comp) > 1 or inside:
            found.append((comp, inside))
    return found


def cycle_paths(inside: list[Edge]) -> list[list[str]]:
    """For each edge u -> v of an SCC, the shortest cycle through it; each cycle once, from its least module."""
    succ: dict[str, set[str]] = defaultdict(set)
    for e in inside:
        succ[e.src].add(e.dst)
    found: dict[tuple[str, ...], None] = {}
    for u, v in sorted({(e.src, e.dst) for e in inside}):
        prev = {v: v}
        queue = deque([v])
        while queue and u not in prev:
            x = queue.popleft()
            for y in sorted(succ[x] - prev.keys()):
                prev[y] = x
                queue.append(y)
        path = [u]  # walk back from u to v, then close the loop at u
        while path[-1] != v:
            path.append(prev[path[-1]])
        ring = [u, *reversed(path[1:])] if u != v else [u]
        k = ring.index(min(ring))
        found[tuple(ring[k:] + ring[:k])] = None
    return [[*ring, ring[0]] for ring in found]


def layer_violations(edges: list[Edge]) -> list[tuple[str, Edge]]:
    def hit(name: str, patterns: tuple[str, ...]) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in patterns)

    return [(why, e) for why, imp, imp_ok, tgt, tgt_ok in LAYER_RULES for e in edges
            if hit(e.src, imp) and not hit(e.src, imp_ok) and hit(e.dst, tgt) and not hit(e.dst, tgt_ok)]


def test_no_import_cycles() -> None:
    modules, edges = scan(PACKAGE_DIR)
    found = cycles(modules, edges)
    msg = [f"{len(found)} import cycle(s) in {ROOT}/ (function-local and TYPE_CHECKING imports count):"]
    for comp, inside in found:
        where: dict[tuple[str, str], list[str]] = defaultdict(list)
        for e in inside:
            where[e.src, e.dst].append(e.where)
        msg.append(f"\n* strongly connected: {', '.join(comp)}")
        for ring in cycle_paths(inside):
            msg.append("  " + " -> ".join(ring))
            msg += [f"      {a} -> {b}  ({', '.join(where[a, b])})" for a, b in pairwise(ring)]
    assert not found, "\n".join(msg)


def test_layers_point_down() -> None:
    _, edges = scan(PACKAGE_DIR)
    bad = layer_violations(edges)
    lines = [f"- {why}: {e.src} -> {e.dst}  ({e.where})" for why, e in bad]
    assert not bad, f"{len(bad)} import(s) against the layer rules:\n" + "\n".join(lines)


def test_scan_sees_function_local_and_type_checking_imports(tmp_path: Path) -> None:
    files = {
        "mini/__init__.py": "import lazy_loader as lazy\n__getattr__, __dir__, __all__ = lazy.attach(\n"
                            "    __name__, submod_attrs={'a': ['f'], 'sub.c': ['x']}, submodules=['sub'])\n"
                            "VERSION = '1'\n",
        "mini/a.py": "def f():\n    from .b import g  # function-local\n    return g()\n",
        "mini/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from mini.a import f\n"
                     "try:\n    import mini.leaf\nexcept ImportError:\n    pass\ndef g():\n    return 1\n",
        "mini/leaf.py": "import os\n",
        "mini/sub/__init__.py": "from . import c\nfrom .c import x\n",
        "mini/sub/c.py": "from .. import VERSION\nx = 1\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    modules, edges = scan(tmp_path / "mini")
    pairs = {(e.src, e.dst) for e in edges}
    assert pairs == {
        ("mini", "mini.a"), ("mini", "mini.sub"), ("mini", "mini.sub.c"),  # lazy_loader.attach
        ("mini.a", "mini.b"),  # function-local
        ("mini.b", "mini.a"),  # TYPE_CHECKING
        ("mini.b", "mini.leaf"),  # inside try
        ("mini.sub", "mini.sub.c"),  # relative from an __init__: the package is itself
        ("mini.sub.c", "mini"),  # `from .. import VERSION`: not a module, so the package
    }
    assert Edge("mini.a", "mini.b", f"{Path('mini', 'a.py')}:2") in edges  # file:line of the import
    assert {tuple(c) for c, _ in cycles(modules, edges)} == {("mini.a", "mini.b"), ("mini", "mini.sub", "mini.sub.c")}
    assert [cycle_paths(inside) for _, inside in cycles(modules, edges)] == [
        [["mini.a", "mini.b", "mini.a"]],
        [["mini", "mini.sub", "mini.sub.c", "mini"], ["mini", "mini.sub.c", "mini"]],
    ]

    (tmp_path / "mini/sub/__init__.py").write_text("import lazy_loader\nNAMES = {'c': []}\n"
                                                  "__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, "
                                                  "submod_attrs=NAMES)\n")
    with pytest.raises(ScanError, match="cannot read"):
        scan(tmp_path / "mini")
