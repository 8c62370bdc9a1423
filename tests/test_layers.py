"""One-way layers: a module imports only from its own layer or the layers below, and no modules import each other in
a circle. The table below is the one place each module's layer is decided; docs/design.md ("Layers") mirrors it.

Imports are read with ``ast`` from the source files, at module level *and* inside functions (an import moved into a
function still ties the two modules together), so the check sees what a reader of the code sees.
"""

from __future__ import annotations

import ast
import importlib.util
import textwrap
from pathlib import Path

import pytest

# Lowest first. A module may import from its own layer and from the layers before it.
LAYERS: dict[str, tuple[str, ...]] = {
    # what every part needs: errors, logging, files, the run folder, the vocabulary and dataset facts, QA rows
    "base": ("mevqa", "mevqa.errors", "mevqa.log", "mevqa.jsonl", "mevqa.runfolder", "mevqa.vocab",
             "mevqa.dataset_facts", "mevqa.rows", "mevqa.cli_style", "mevqa.paths"),
    # the model's inputs and the model: clip media, prompts, batching, loading, generation, label scoring
    # (a stage folder's package sits in the layer of its lowest module: it imports nothing)
    "inputs": ("mevqa.media", "mevqa.media.build", "mevqa.media.clips", "mevqa.media.face", "mevqa.media.flow",
               "mevqa.media.span", "mevqa.media.windows", "mevqa.messages", "mevqa.options",
               "mevqa.models", "mevqa.models.families", "mevqa.models.loading", "mevqa.models.collate",
               "mevqa.models.tiny", "mevqa.answering", "mevqa.answering.generation", "mevqa.answering.label_scoring"),
    # one stage each: data builders, scoring, answering a row
    "stages": ("mevqa.data_builders", "mevqa.data_builders.qa", "mevqa.data_builders.sheets",
               "mevqa.data_builders.casme2", "mevqa.data_builders.samm", "mevqa.data_builders.smic",
               "mevqa.data_builders.casme3", "mevqa.data_builders.fourdme", "mevqa.data_builders.build",
               "mevqa.data_builders.spot_readers", "mevqa.data_builders.spot", "mevqa.data_builders.synth",
               "mevqa.data_builders.synth_long", "mevqa.data_builders.lvqa",
               "mevqa.eval", "mevqa.eval.rows", "mevqa.eval.metrics", "mevqa.eval.bootstrap", "mevqa.eval.samples",
               "mevqa.eval.scoring", "mevqa.eval.stamp", "mevqa.eval.report", "mevqa.eval.compare",
               "mevqa.eval.strs", "mevqa.eval.lvqa", "mevqa.longvideo", "mevqa.longvideo.lvqa",
               "mevqa.answering.au_rules", "mevqa.answering.strategies", "mevqa.answering.consistency",
               "mevqa.answering.inference", "mevqa.answering.submission"),
    # whole runs over many rows or clips: training, prediction, cross-validation, ME-STR, folds, exports, budgets
    "runs": ("mevqa.train", "mevqa.train.config", "mevqa.train.data", "mevqa.train.parts", "mevqa.train.trainer",
             "mevqa.train.run", "mevqa.train.export", "mevqa.train.inspect", "mevqa.answering.predict",
             "mevqa.experiments", "mevqa.experiments.split", "mevqa.experiments.cv", "mevqa.longvideo.spot",
             "mevqa.longvideo.str_predict", "mevqa.longvideo.lvqa_predict"),
    # what only the command line (and the recipes, and evaluate) use; nothing imports these
    "commands": ("mevqa.cli", "mevqa.__main__", "mevqa.demo", "mevqa.answering.answer", "mevqa.models.merge",
                 "mevqa.data_builders.cli", "mevqa.data_builders.synth_cli", "mevqa.eval.cli", "mevqa.eval.strs_cli",
                 "mevqa.eval.lvqa_cli", "mevqa.train.launch",
                 "mevqa.eval.metric.mevqa_vqa.mevqa_vqa", "mevqa.recipes", "mevqa.recipes.lora",
                 "mevqa.recipes.full"),
}
PACKAGES = ("mevqa", "mevqa.eval", "mevqa.data_builders", "mevqa.recipes")


def layer_of(layers: dict[str, tuple[str, ...]]) -> dict[str, int]:
    rank = {}
    for index, modules in enumerate(layers.values()):
        for module in modules:
            assert module not in rank, f"{module} is in two layers"
            rank[module] = index
    return rank


def package_folders(packages=PACKAGES) -> dict[str, Path]:
    """Where each top package's files are, as the installed package says (the repository's folders)."""
    return {name: Path(next(iter(importlib.util.find_spec(name).submodule_search_locations))) for name in packages}


def source_files(folders: dict[str, Path]) -> dict[str, Path]:
    """module name -> file, for every .py under the packages (a nested package's files under its own name)."""
    files = {}
    for package, folder in folders.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join((package, *parts))
            if any(name == other or name.startswith(other + ".") for other in folders if other != package
                   and other.startswith(package + ".")):
                continue  # a nested top package (mevqa.eval inside mevqa's folder, if laid out so) is its own entry
            files[name] = path
    return files


def imports_of(name: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(imported first-party module, line) for every import in the file, module-level and in functions."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from mevqa import vocab` imports the module mevqa.vocab; `from mevqa.eval import score` the package
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]  # `import mevqa.media.flow` names mevqa.media.flow; a symbol path
            if target and target != name:
                found.append((target, node.lineno))
    return found


def import_graph(folders: dict[str, Path]) -> dict[str, list[tuple[str, int]]]:
    files = source_files(folders)
    return {name: imports_of(name, path, set(files)) for name, path in files.items()}


def upward_imports(graph, layers) -> list[str]:
    """Every import of a module from a higher layer, as ``a (layer) imports b (layer) at line N``."""
    rank, names = layer_of(layers), list(layers)
    problems = [f"{module} has no layer: add it to LAYERS in tests/test_layers.py (and docs/design.md)"
                for module in graph if module not in rank]
    for module, targets in graph.items():
        for target, line in targets:
            if module in rank and target in rank and rank[target] > rank[module]:
                problems.append(f"{module} ({names[rank[module]]}) imports {target} ({names[rank[target]]}) "
                                f"at line {line}")
    return problems


def circles(graph) -> list[list[str]]:
    """Strongly connected groups of two or more modules (modules that import each other, directly or around)."""
    index, low, stack, on_stack, groups, counter = {}, {}, [], set(), [], [0]

    def visit(node):  # Tarjan's algorithm; the graph is small, recursion is fine
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target, _ in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


# A package's __init__ re-exports its modules, so a package and the modules it re-exports form circles by
# construction (mevqa.eval -> mevqa.eval.compare -> mevqa.eval.bootstrap ...): a package node counts as an edge
# only from outside, and its own modules' imports of it are left out of the circle check.
def without_own_package_edges(graph):
    return {module: [(t, line) for t, line in targets if not module.startswith(t + ".")]
            for module, targets in graph.items()}


@pytest.fixture(scope="module")
def graph():
    return import_graph(package_folders())


def test_every_module_has_a_layer_and_imports_only_downward(graph):
    assert not upward_imports(graph, LAYERS), "\n".join(upward_imports(graph, LAYERS))


def test_no_module_is_in_the_table_without_a_file(graph):
    assert sorted(set(layer_of(LAYERS)) - set(graph)) == []


def test_no_circle_of_imports(graph):
    assert circles(without_own_package_edges(graph)) == []


def test_nothing_imports_a_command_module(graph):
    """Commands are reached through mevqa.cli's table of module names (importlib), never imported by code."""
    commands = set(LAYERS["commands"]) - {"mevqa.cli"}
    users = [f"{module} imports {target}" for module, targets in graph.items() for target, _ in targets
             if target in commands and module not in ("mevqa.__main__",) and not module.startswith("mevqa.recipes")]
    assert users == []


def _package(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    for relative, text in files.items():
        path = tmp_path / "pkg" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return {"pkg": tmp_path / "pkg"}


def test_the_checker_reports_a_planted_upward_import_even_inside_a_function(tmp_path):
    folders = _package(tmp_path, {
        "__init__.py": "",
        "low.py": "def f():\n    from pkg.high import g\n    return g\n",
        "high.py": "from pkg import low\n\ndef g():\n    return low\n",
    })
    layers = {"base": ("pkg", "pkg.low"), "top": ("pkg.high",)}
    graph = import_graph(folders)
    assert upward_imports(graph, layers) == ["pkg.low (base) imports pkg.high (top) at line 2"]
    assert circles(graph) == [["pkg.high", "pkg.low"]]
    # the same package with the import pointing down passes
    (folders["pkg"] / "low.py").write_text("def f():\n    return 1\n")
    assert upward_imports(import_graph(folders), layers) == []
    assert circles(import_graph(folders)) == []


def test_the_checker_resolves_relative_imports_and_names_a_module_without_a_layer(tmp_path):
    folders = _package(tmp_path, {
        "__init__.py": "",
        "sub/__init__.py": "from .leaf import x\n",
        "sub/leaf.py": "from ..top import y\nx = 1\n",
        "top.py": "y = 2\n",
    })
    layers = {"base": ("pkg", "pkg.sub", "pkg.sub.leaf"), "top": ()}
    problems = upward_imports(import_graph(folders), layers)
    assert problems == ["pkg.top has no layer: add it to LAYERS in tests/test_layers.py (and docs/design.md)"]
    layers["top"] = ("pkg.top",)
    assert upward_imports(import_graph(folders), layers) == ["pkg.sub.leaf (base) imports pkg.top (top) at line 1"]


def test_docs_design_mirrors_the_table():
    """docs/design.md's "Layers" table lists the same modules in the same layers as LAYERS."""
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "design.md").read_text(encoding="utf-8")
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    documented = {}
    for line in section.splitlines():
        match = re.match(r"\| \d+ (\w+) \|[^|]*\|(.*)\|$", line)
        if match:
            documented[match.group(1)] = tuple(re.findall(r"`([\w.]+)`", match.group(2)))
    assert documented == LAYERS
