"""lessonlib's layers: every module lives in a layer folder, imports only from its own layer or lower ones, and
never reaches for another module's private names; the cost model and the analytic dashboards work without
PyTorch. See the map in lessonlib/__init__.py."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lessonlib"

# Lower number = lower layer. A module may import from layers with a number <= its own.
LAYERS = {"core": 0, "costs": 1, "models": 2, "measure": 3, "course": 4, "display": 5, "dashboards": 5, "lessons": 5}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


MODULES = sorted(PACKAGE.rglob("*.py"))


def imports_of(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module, imported names) of every import in the file, including those inside functions."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.append((node.lineno, target, [alias.name for alias in node.names]))
    return found


def test_every_module_lives_in_a_layer_folder():
    loose = [str(p.relative_to(PACKAGE)) for p in MODULES
             if p.parent == PACKAGE and p.name != "__init__.py"]
    assert not loose, f"put these modules in one of the layer folders {sorted(LAYERS)}: {loose}"
    folders = {p.relative_to(PACKAGE).parts[0] for p in MODULES if p.parent != PACKAGE}
    assert folders <= set(LAYERS), f"unknown layer folders {sorted(folders - set(LAYERS))}: add them to LAYERS"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_down_the_layers_and_never_reach_for_private_names(path):
    source_layer = layer_of(module_name(path))
    problems = []
    for line, target, names in imports_of(path):
        if not target.startswith("lessonlib"):
            continue
        if source_layer is None:
            problems.append(f"line {line}: lessonlib/__init__.py maps the package and imports nothing ({target})")
            continue
        target_layer = layer_of(target)
        if target_layer is None:   # `from lessonlib import costs`: the names are the layers imported
            targets = [(n, LAYERS.get(n)) for n in names]
        else:
            targets = [(target_layer, LAYERS.get(target_layer))]
        for layer, rank in targets:
            if rank is None or rank > LAYERS[source_layer]:
                problems.append(f"line {line}: {source_layer} (layer {LAYERS[source_layer]}) imports {target} "
                                f"({layer}, layer {rank})")
        private = [n for n in names if n.startswith("_")]
        if private:
            problems.append(f"line {line}: imports private name(s) {private} from {target}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_uses_a_private_attribute_of_another_lessonlib_module(path):
    tree = ast.parse(path.read_text())
    module_aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("lessonlib")):
            module_aliases |= {alias.asname or alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            module_aliases |= {(alias.asname or alias.name).split(".")[0] for alias in node.names
                               if alias.name.startswith("lessonlib")}
    reaching = [f"line {node.lineno}: {node.value.id}.{node.attr}" for node in ast.walk(tree)
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in module_aliases and node.attr.startswith("_") and not node.attr.startswith("__")]
    assert not reaching, "private names of other modules: " + "; ".join(reaching)


def test_the_layer_check_catches_an_upward_import_and_a_private_name(tmp_path, monkeypatch):
    """The checks above fail on a cost-model module that imports a model, or another module's private helper."""
    fake = tmp_path / "lessonlib"
    (fake / "costs").mkdir(parents=True)
    bad = fake / "costs" / "probe.py"
    bad.write_text("from ..models.tinygpt import TinyGPT\nfrom .spec import _lookup\nfrom . import spec\n"
                   "x = spec._positive_int\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    with pytest.raises(AssertionError, match=r"costs \(layer 1\) imports lessonlib.models.tinygpt"):
        test_imports_go_down_the_layers_and_never_reach_for_private_names(bad)
    with pytest.raises(AssertionError, match=r"private name\(s\) \['_lookup'\]"):
        test_imports_go_down_the_layers_and_never_reach_for_private_names(bad)
    with pytest.raises(AssertionError, match=r"spec\._positive_int"):
        test_no_module_uses_a_private_attribute_of_another_lessonlib_module(bad)


def test_the_cost_model_and_the_analytic_dashboards_import_without_pytorch():
    """A learner reading lesson 01 needs no PyTorch for the arithmetic; the dashboards start fast."""
    code = """
import importlib, pkgutil, sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, NoTorch())
import lessonlib.costs, lessonlib.core
for package in (lessonlib.core, lessonlib.costs):
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        importlib.import_module(info.name)
import lessonlib.dashboards.cost_model, lessonlib.dashboards.decode_step, lessonlib.dashboards.edge_device
import lessonlib.dashboards.serving, lessonlib.dashboards.kv_memory, lessonlib.dashboards.presenter
import lessonlib.dashboards.registry, lessonlib.display.svgchart
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
