"""The package's layers, read from its imports with ``ast`` (nothing imported): below the console
entry point (``sae.cli``, ``sae.__main__``) no module of ``sae`` outside ``sae.demo`` imports the
demo or the editor, and no import circle exists among the project's modules."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules() -> dict[str, Path]:
    mods = {}
    for package in ("sae", "editor"):
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = path
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Each module's project imports, at module level and in function bodies alike."""

    def owner(target: str) -> str | None:
        while target and target not in mods:
            target = target.rpartition(".")[0]
        return target or None

    edges = {}
    for name, path in mods.items():
        targets = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        edges[name] = {o for t in targets if (o := owner(t)) and o != name}
    return edges


def test_no_library_module_imports_the_demo_or_the_editor():
    edges = _imports(_modules())
    entry = {"sae.cli", "sae.__main__"}
    wrong = [
        f"{m} imports {o}"
        for m, outs in edges.items()
        for o in outs
        if m.startswith("sae")
        and not m.startswith("sae.demo")
        and m not in entry
        and (o.startswith("sae.demo") or o.startswith("editor"))
    ]
    assert wrong == []


def test_no_import_circles():
    edges = _imports(_modules())
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    circles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for o in sorted(edges[m]):
            if state.get(o) == 1:
                circles.append(" -> ".join(path[path.index(o) :] + [o]))
            elif o not in state:
                visit(o, path + [o])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert circles == []


# The SAE library proper: what trains, stores and runs an SAE on an encoder's layer.
LIBRARY = {
    "sae.model", "sae.sae_config", "sae.kernels", "sae.sketch", "sae.train", "sae.activations", "sae.backbone",
    "sae.view", "sae.formats", "sae.hooks", "sae.distributed", "sae.atomic", "sae.evaluate", "sae.configs",
    "sae.device", "sae.errors", "sae.images", "sae.download", "sae.assets", "sae.weights", "sae",
}  # fmt: skip


def test_the_sae_library_imports_nothing_of_editing_decoding_the_demo_or_qt():
    edges = _imports(_modules())
    wrong = [f"{m} imports {o}" for m in sorted(LIBRARY) for o in sorted(edges[m]) if o not in LIBRARY]
    assert wrong == []
    for name in LIBRARY | {m for m in _modules() if m.startswith("sae")}:
        source = _modules()[name].read_text(encoding="utf-8")
        assert "PySide6" not in source and "superqt" not in source, f"{name} speaks Qt"
