"""The layers of radius_op25b (shared/ARCHITECTURE.md), read from the source: imports point down.

    faces     cli/ (and web/)          parse, call a service, render
    shell     proxy/                   asyncio sockets: listeners, relay, upstreams
    services  services/                held policy, push worker, recorder, spool, explain
    store     store/, migrations       engines, models, repository, change feeds
    core      core/                    pure: decision, profiles, config, clients, splice
    wire      radius/, dictionaries    sans-I/O packets, attributes, crypto, dictionaries

`errors`, `metrics` and `logs` are leaves that any layer may import; they import no other module of ours.
Every import counts, also one inside a function or under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "radius_op25b"
LAYERS = ["wire", "core", "store", "services", "shell", "faces"]
LEAVES = {"radius_op25b.errors", "radius_op25b.metrics", "radius_op25b.logs", "radius_op25b"}
PREFIXES = {  # longest prefix wins
    "radius_op25b.radius": "wire",
    "radius_op25b.dictionaries": "wire",
    "radius_op25b.core": "core",
    "radius_op25b.store": "store",
    "radius_op25b.migrations": "store",
    "radius_op25b.services": "services",
    "radius_op25b.proxy": "shell",
    "radius_op25b.cli": "faces",
    "radius_op25b.web": "faces",
    "radius_op25b.__main__": "faces",
}


def layer_of(module: str) -> str | None:
    if module in LEAVES:
        return "leaf"
    best = max((p for p in PREFIXES if module == p or module.startswith(p + ".")), key=len, default=None)
    return PREFIXES[best] if best else None


def source_modules() -> dict[str, Path]:
    """Module name -> file, for the package and the two folders shipped inside it."""
    found: dict[str, Path] = {}
    for base, name in (
        (ROOT / PACKAGE, PACKAGE),
        (ROOT / "migrations", f"{PACKAGE}.migrations"),
        (ROOT / "dictionaries", f"{PACKAGE}.dictionaries"),
    ):
        for path in base.rglob("*.py"):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([name, *parts])] = path
    return found


def imports_of(module: str, source: str, is_package: bool, known: set[str]) -> list[tuple[int, str]]:
    """(line, imported module) for every import of one of our modules; `from pkg import mod`
    counts as an import of pkg.mod when that is a module of the tree."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.append((node.lineno, sub if sub in known else target))
    return [(line, name) for line, name in out if name == PACKAGE or name.startswith(PACKAGE + ".")]


def violations(modules: dict[str, str], packages: set[str]) -> list[str]:
    """Every import that points up a layer, or out of a leaf; `modules` maps name -> source."""
    bad = []
    known = set(modules)
    for module, source in sorted(modules.items()):
        mine = layer_of(module)
        if mine is None:
            bad.append(f"{module}: in no layer (add it to PREFIXES)")
            continue
        for line, target in sorted(set(imports_of(module, source, module in packages, known))):
            theirs = layer_of(target)
            if mine == "leaf":
                if target != PACKAGE:
                    bad.append(f"{module}:{line}: a leaf imports {target}")
            elif theirs is None:
                bad.append(f"{module}:{line}: imports {target}, which is in no layer")
            elif theirs != "leaf" and LAYERS.index(theirs) > LAYERS.index(mine):
                bad.append(f"{module}:{line}: {mine} imports {target} ({theirs}, a layer above)")
    return bad


def _tree() -> tuple[dict[str, str], set[str]]:
    files = source_modules()
    return {m: p.read_text() for m, p in files.items()}, {m for m, p in files.items() if p.name == "__init__.py"}


def test_imports_point_down() -> None:
    modules, packages = _tree()
    assert len(modules) > 30  # the reading found the tree
    assert violations(modules, packages) == []


@pytest.mark.parametrize(
    ("module", "line", "layer"),
    [
        ("radius_op25b.core.decision", "from radius_op25b.store import db", "store"),
        ("radius_op25b.services.push", "from radius_op25b.proxy.clients import ClientTable", "shell"),
        ("radius_op25b.store", "from radius_op25b.services import spool", "services"),
        ("radius_op25b.radius.packet", "import radius_op25b.core.profiles", "core"),
        ("radius_op25b.core.profiles", "def f():\n    from radius_op25b.cli import main", "faces"),
    ],
)
def test_an_upward_import_is_found(module: str, line: str, layer: str) -> None:
    modules, packages = _tree()
    modules[module] = modules[module] + "\n" + line + "\n"
    found = violations(modules, packages)
    assert len(found) == 1 and f"({layer}, a layer above)" in found[0], found


def test_a_leaf_imports_nothing_of_ours() -> None:
    modules, packages = _tree()
    modules["radius_op25b.errors"] += "\nfrom radius_op25b.core import decision\n"
    found = violations(modules, packages)
    assert len(found) == 1 and found[0].endswith(": a leaf imports radius_op25b.core.decision"), found
