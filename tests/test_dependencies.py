"""What ``make run`` installs (``pip install -e .``: the base dependencies, no extra) is enough for every
module that is not an optional extra's: ``facecast bench`` once stopped with "No module named 'httpx'"
because httpx was only in the test extra."""

from __future__ import annotations

import ast
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "facecast"

OPTIONAL_MODULES = {
    # Modules that only load after a guard has checked their extra is installed (see each file).
    "face/neurosync_net.py": {"torch"},  # imported by face/neurosync.py after its torch check
    "stt/vosk.py": {"vosk"},  # VoskSTT checks the extra in __init__ (ConfigError naming it) before any use
    "stt/sherpa.py": {"sherpa_onnx"},  # the same in SherpaSTT.__init__
    "engine/sessionstore.py": {"redis"},  # the scale extra: RedisStore imports it in __init__ (ConfigError naming it)
    # the protocol servers of the source checkout, imported only after provider_bench checks they exist
    "bench/provider_bench.py": {"tests"},
    "bench/realtime_bench.py": {"tests"},
    # the scale extra's Ray: imported only after ray_pools.require_serve() raised a ConfigError naming it
    "scale/ray_pools.py": {"ray"},
    "scale/cli.py": {"ray"},
}
"""Imports outside a ``try: ... except ImportError`` that belong to an extra, per file under src/facecast."""

_GUARDS = {"ImportError", "ModuleNotFoundError", "Exception", "OSError"}


def _project() -> dict[str, object]:
    data: dict[str, object] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return data


def _base_closure() -> set[str]:
    """The distributions a plain ``pip install .`` brings: the base dependencies and theirs (no extras)."""
    todo = [Requirement(spec) for spec in _project()["dependencies"]]  # type: ignore[attr-defined]
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            todo += [Requirement(spec) for spec in metadata.requires(req.name) or []]
        except metadata.PackageNotFoundError:
            pass  # not installed here (a platform-specific dependency): its own dependencies are unknown
    return seen


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether ``node`` sits in the body of a ``try`` that catches a failed import, or under an
    ``if sys.version_info ...`` (a backport whose dependency has the same version marker)."""
    child, parent = node, parents.get(node)
    while parent is not None:
        if isinstance(parent, ast.If) and "version_info" in ast.unparse(parent.test):
            return True
        if isinstance(parent, ast.Try) and child in parent.body:
            for handler in parent.handlers:
                types = handler.type
                names = [types] if not isinstance(types, ast.Tuple) else list(types.elts)
                if handler.type is None or any(isinstance(n, ast.Name) and n.id in _GUARDS for n in names):
                    return True
        child, parent = parent, parents.get(parent)
    return False


def _unguarded_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        if not _guarded(node, parents):
            found |= {name.split(".")[0] for name in names}
    return found - set(sys.stdlib_module_names) - {"facecast", "__future__"}


def test_every_unguarded_import_comes_with_a_plain_install() -> None:
    base = _base_closure()
    owners = metadata.packages_distributions()
    missing = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        for module in sorted(_unguarded_imports(path) - OPTIONAL_MODULES.get(relative, set())):
            dists = {canonicalize_name(d) for d in owners.get(module, [])}
            if not dists & base:
                missing.append(f"{relative}: {module} ({', '.join(sorted(dists)) or 'not installed'})")
    assert not missing, f"imported without a guard but not installed by 'pip install .': {missing}"


def test_the_benchmarks_need_no_extra() -> None:
    """The modules ``facecast bench`` imports and ``facecast run``'s language-model probe, by name."""
    base = _base_closure()
    owners = metadata.packages_distributions()
    for path in [*sorted((SRC / "bench").glob("*.py")), SRC / "llm" / "probe.py"]:
        relative = path.relative_to(SRC).as_posix()
        for module in _unguarded_imports(path) - OPTIONAL_MODULES.get(relative, set()):
            assert {canonicalize_name(d) for d in owners.get(module, [])} & base, (path.name, module)
