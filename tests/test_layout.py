"""The package layout is the architecture: layers import downwards only, and no module imports
itself back through others. Lazy imports inside functions count too."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "kernelop"

LAYERS: dict[str, set[str]] = {
    "base": set(),  # errors, settings, counters
    "dsl": {"base"},
    "compiler": {"base"},
    "plan": {"base", "dsl", "compiler"},
    "cuda": {"base", "compiler", "plan"},
    "pytorch": {"base", "dsl", "compiler", "plan", "cuda"},
    "native": {"base", "dsl", "compiler", "plan", "cuda", "pytorch"},
    "trt": {"base", "dsl", "compiler", "plan", "cuda", "pytorch"},
    "frontend": {"base", "dsl", "compiler", "plan", "cuda", "pytorch", "native", "trt"},
    "export": {"base", "dsl", "compiler", "plan", "cuda", "pytorch", "native", "trt", "frontend"},
    "cli": {"base", "dsl", "compiler", "plan", "cuda", "pytorch", "native", "trt", "frontend", "export"},
}
"""Each layer and the layers it may import. ``kernelop/__init__.py`` and ``__main__.py`` sit on top."""
BASE_MODULES = {"errors", "settings", "counters"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every kernelop module ``path`` imports, absolute names, ``from x import y`` resolved to x.y when y is a module."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "kernelop")
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "kernelop":
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found.add(submodule if submodule in ALL_MODULES else target)
    return found


ALL_MODULES = {module_name(p) for p in PACKAGE.rglob("*.py")}
GRAPH = {module_name(p): imports_of(p) - {module_name(p)} for p in PACKAGE.rglob("*.py")}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) < 2 or parts[1] in ("__main__",):
        return None  # the package itself
    return "base" if parts[1] in BASE_MODULES else parts[1]


def test_every_module_belongs_to_a_known_layer():
    unknown = {m for m in ALL_MODULES if layer_of(m) is not None and layer_of(m) not in LAYERS}
    assert not unknown, f"modules outside the layers of the layout: {sorted(unknown)}"


def test_layers_import_only_the_layers_below_them():
    wrong = []
    for module, imported in GRAPH.items():
        layer = layer_of(module)
        if layer is None:
            continue
        for target in imported:
            target_layer = layer_of(target)
            if target_layer is None or (target_layer != layer and target_layer not in LAYERS[layer]):
                wrong.append(f"{module} ({layer}) imports {target} ({target_layer or 'the package'})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles():
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH.get(module, ())):
            if target == "kernelop":
                continue
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)
