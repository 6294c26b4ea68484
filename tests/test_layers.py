"""The import map of suite/: no module imports one of a layer above its own, and suite/ never
imports apps/. Lazy imports inside functions count too: they run the same code."""
import ast
import os

from conftest import REPO

# Lowest first. A package may import its own modules and those of any layer below it.
LAYERS = [
    ("suite.errors", "suite.config"),
    ("suite.text",),
    ("suite.data",),
    ("suite.rl",),
    ("suite.viz",),
    ("suite.runtime",),
    ("suite.models", "suite.interop"),
    ("suite.metrics",),
    ("suite.export",),
    ("suite.tasks",),
    ("suite.demo",),
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def suite_imports(path: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {name for name in found if name.split(".")[0] in ("suite", "apps")}


def modules():
    root = os.path.join(REPO, "suite")
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                module = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                yield module.removesuffix(".__init__"), path


def test_every_suite_package_has_a_layer():
    packages = {package_of(m) for m, _ in modules()} - {"suite"}
    assert packages == set(RANK), packages ^ set(RANK)


def test_no_import_runs_up_a_layer_and_suite_never_imports_apps():
    upward = []
    for module, path in modules():
        if module == "suite":  # the package's own __init__: the CPU defaults every app wants
            continue
        rank = RANK[package_of(module)]
        for name in suite_imports(path):
            assert not name.startswith("apps"), f"{module} imports {name}"
            target = package_of(name)
            if target in RANK and RANK[target] > rank:
                upward.append(f"{module} -> {name}")
    assert not upward, "\n".join(sorted(upward))


def test_the_runtime_imports_no_task_export_or_model_module():
    for module, path in modules():
        if package_of(module) == "suite.runtime":
            bad = {n for n in suite_imports(path)
                   if package_of(n) in ("suite.tasks", "suite.export", "suite.models")}
            assert not bad, (module, bad)
