"""The package as pip builds it: every sub-package is listed in pyproject.toml, and the shipped files (recipes,
accelerate configs, prompt files, eval suites, data, the Slurm template) are found by name from any directory."""

import os
import tomllib
from pathlib import Path

import pytest

from empo import resources
from empo.recipe import find_recipe

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_in_the_tree_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    in_tree = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "empo").rglob("__init__.py")}
    mapped = {f"empo._shipped.{kind}" for kind in resources.SHIPPED}
    assert listed == in_tree | mapped


@pytest.fixture
def elsewhere(tmp_path):
    cwd = os.getcwd()
    os.chdir(tmp_path)  # nothing of the repository is reachable by a relative path here
    yield tmp_path
    os.chdir(cwd)


def test_shipped_files_resolve_by_repository_path_and_short_name_from_any_directory(elsewhere):
    assert find_recipe("recipes/SmolLM2-135M-Instruct/empo/config_arith_mix_band_ds_cpu.yaml") == \
        find_recipe("SmolLM2-135M-Instruct/empo/config_arith_mix_band_ds_cpu") == find_recipe(resources.DEFAULT_RECIPE)
    assert resources.resolve("recipes/accelerate_configs/zero3.yaml", "recipes") == \
        resources.resolve("zero3", "recipes", subdir="accelerate_configs")
    assert resources.resolve("eval/suites/paper_math.yaml", "suites") == resources.resolve("paper_math", "suites")
    assert resources.resolve("recipes/prompts/freeform.yaml", "recipes").is_file()
    assert resources.resolve("nope", "recipes") is None and resources.resolve("/abs/nope.yaml", "recipes") is None
    names = resources.recipe_names()
    assert "recipes/Qwen2.5-Math-7B/empo/config_numina20k.yaml" in names and all("/sweeps/" not in n for n in names)
    assert all(find_recipe(n).is_file() for n in names)


def test_a_local_file_wins_over_a_shipped_one(elsewhere):
    local = elsewhere / "recipes" / "SmolLM2-135M-Instruct" / "empo" / "config_arith_cpu.yaml"
    local.parent.mkdir(parents=True)
    local.write_text("max_steps: 1\n")
    assert find_recipe("recipes/SmolLM2-135M-Instruct/empo/config_arith_cpu.yaml").resolve() == local.resolve()


def test_shipped_data_and_suites_load_from_any_directory(elsewhere):
    from empo.data import DataSpec, load_questions
    from empo.evaluation.evaluate import load_suite
    from empo.launch.commands import SLURM_TEMPLATE

    rows = load_questions(DataSpec(name="data/benchmarks/gsm8k.jsonl", limit=2))
    assert len(rows) == 2 and rows == load_questions(DataSpec(name="gsm8k", limit=2))
    assert load_suite("eval/suites/cpu_default.yaml")["benchmarks"] == "arith,arith:add2+sub2"
    assert SLURM_TEMPLATE.is_file()


def _import_graph() -> dict[str, set[str]]:
    """empo module -> the empo modules it imports anywhere in its file (top level or inside a function)."""
    import ast

    files = {}
    for path in (ROOT / "empo").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def module_of(name: str) -> str | None:
        while name not in files:
            if "." not in name:
                return None
            name = name.rsplit(".", 1)[0]
        return name

    graph = {}
    for name, path in files.items():
        graph[name] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            graph[name] |= {m for t in targets if t.startswith("empo.") and (m := module_of(t)) not in (None, name)}
    return graph


def test_the_import_graph_has_no_cycle():
    graph = _import_graph()
    assert graph["empo.cli"] >= {"empo.train", "empo.launch"}  # the graph sees lazy imports too
    done, path = set(), []

    def visit(module):
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(module):] + [module]))
        if module in done:
            return
        path.append(module)
        for other in sorted(graph[module]):
            visit(other)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_the_vllm_extra_is_inside_the_range_trl_declares():
    """TRL warns (and is untested) outside the vLLM versions it declares; the vllm extra must stay inside them."""
    import importlib.util
    import re

    from packaging.requirements import Requirement
    from packaging.version import Version

    source = Path(importlib.util.find_spec("trl.import_utils").origin).read_text()
    low, high = re.search(r'Version\("([\d.]+)"\) <= _vllm_base_version <= Version\("([\d.]+)"\)', source).groups()
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["vllm"]
    spec = Requirement(extra[0]).specifier
    allowed = [v for v in spec.filter([f"0.{m}.{p}" for m in range(15, 40) for p in range(4)])]
    assert allowed and all(Version(low) <= Version(v) <= Version(high) for v in allowed), (str(spec), low, high)


def test_the_recipe_layer_and_the_rewards_sit_below_training():
    graph = _import_graph()

    def reaches(module, seen=None):
        seen = set() if seen is None else seen
        for other in graph[module] - seen:
            seen.add(other)
            reaches(other, seen)
        return seen

    for module in ["empo.recipe", *(m for m in graph if m.startswith("empo.rewards"))]:
        upward = sorted(m for m in reaches(module) if m.startswith("empo.training"))
        # the one arrow left: the recipe check asks the filter's table of TRL's loss normalisations (a leaf module)
        allowed = ["empo.training.filter"] if module == "empo.recipe" else []
        assert upward == allowed, f"{module} reaches up into {upward}"
    assert reaches("empo.training.filter") <= {"empo.errors"}
