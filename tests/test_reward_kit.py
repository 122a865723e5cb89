"""The reward test kit (empo.testing): every shipped reward passes it, each deliberately broken reward fails it with
the property named, and `empo reward check` / `empo rewards` say so on the command line."""

import json
from pathlib import Path

import pytest
from broken_rewards import BROKEN

from empo.cli import main
from empo.errors import ConfigError
from empo.rewards.registry import shipped
from empo.testing import PROPERTIES, RewardCheckFailure, check_reward

BROKEN_FILE = Path(__file__).resolve().parent / "helpers" / "broken_rewards.py"


@pytest.mark.parametrize("name", sorted(shipped()))
def test_every_shipped_reward_passes_the_kit(name):
    results = check_reward(name)  # raises on the first property that fails
    assert [r.property for r in results] == list(PROPERTIES)
    skipped = {r.property for r in results if r.status == "skip"}
    expected = {"random": {"group_equivariant", "group_independent"},
                "gold_accuracy": {"gold_untouched", "gold_invariant"}}.get(name, set())
    assert skipped == expected


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_each_broken_reward_fails_with_its_property_named(name):
    spec = f"{BROKEN_FILE}:{name}"
    results = check_reward(spec, raise_on_failure=False)
    failed = {r.property for r in results if r.status == "fail"}
    assert BROKEN[name] in failed, results
    with pytest.raises(RewardCheckFailure, match=f"^{BROKEN[name]}: "):
        check_reward(spec, properties=[BROKEN[name]])


def test_a_broken_reward_fails_only_where_it_is_broken():
    # split_breaks is a fine reward in one process: only the split shows it
    results = check_reward(f"{BROKEN_FILE}:split_breaks", raise_on_failure=False)
    assert [r.property for r in results if r.status == "fail"] == ["process_split"]


def test_a_reward_that_crashes_in_the_split_is_named_by_its_error():
    # the 2 processes run under torchrun's variables and end with their own status: the error's last line comes back
    with pytest.raises(RewardCheckFailure, match=r"^process_split: failed in 2 processes: RuntimeError: no launched "
                                                 r"runs, please \(WORLD_SIZE=2\)$"):
        check_reward(f"{BROKEN_FILE}:crashes_when_launched", properties=["process_split"])


def test_a_declared_supervised_reward_skips_the_gold_properties():
    results = {r.property: r.status for r in check_reward(f"{BROKEN_FILE}:declared_supervised")}
    assert results["gold_untouched"] == results["gold_invariant"] == "skip"


def test_the_kit_takes_the_reward_object_itself():
    from broken_rewards import order_dependent

    results = {r.property: r.status for r in check_reward(order_dependent, raise_on_failure=False)}
    assert results["group_equivariant"] == "fail" and results["process_split"] == "skip"  # no spec to import


def test_reward_check_exit_status_and_one_line_per_property(capsys):
    assert main(["reward", "check", "format", "--property", "scores", "--property", "seeded"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ok    scores") and out[1].startswith("ok    seeded") and "every property holds" in out[2]
    assert main(["reward", "check", f"{BROKEN_FILE}:unseeded", "--property", "seeded"]) == 1
    assert "FAIL" not in capsys.readouterr().err
    assert main(["reward", "check", "no_such_reward"]) == 2
    assert "unknown reward 'no_such_reward'" in capsys.readouterr().err
    assert main(["reward", "check", "random", "--options", '{"q": 1}']) == 2
    assert "has no option(s) ['q']" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="unknown reward propert"):
        check_reward("format", properties=["nope"])


def test_rewards_lists_shipped_entry_points_and_files(tmp_path, monkeypatch, capsys):
    # an installed distribution registering a reward under the entry-point group empo.rewards
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text(
        "def novel(prompts, completions, weight: float = 1.0, **kwargs):\n    return [weight] * len(completions)\n")
    info = tmp_path / "mypkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mypkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[empo.rewards]\nmy_novelty = mypkg:novel\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["rewards", f"{BROKEN_FILE}:unseeded"]) == 0
    out = capsys.readouterr().out
    for name in [*shipped(), "my_novelty", "unseeded"]:
        assert f"\n{name} " in f"\n{out}", name
    assert "entry point mypkg:novel (mypkg)" in out and f"file {BROKEN_FILE}" in out
    assert "gold_accuracy    supervised" in out and "token statistics: entropies" in out
    # and a recipe can name it, with its options
    from empo.rewards import build_rewards

    (built,) = build_rewards(["my_novelty"], 4, {"my_novelty": {"weight": 0.5}})
    assert built(prompts=["q"] * 4, completions=["a"] * 4) == [0.5] * 4


def test_reward_options_on_the_command_line_are_json(tmp_path):
    from empo.recipe import load_recipe

    recipe = load_recipe(None, ["--reward_funcs", "empo", "random", "--reward_options",
                                json.dumps({"random": {"seed": 3, "p": 0.25}}), "--output_dir", str(tmp_path)])
    assert recipe.empo.reward_options == {"random": {"seed": 3, "p": 0.25}}  # the flag's JSON, parsed
    from empo.rewards import build_rewards

    _, rnd = build_rewards(recipe.empo.reward_funcs, 8, recipe.empo.reward_options, {"seed": 42})
    assert (rnd.seed, rnd.p) == (3, 0.25)
    _, default = build_rewards(["empo", "random"], 8, None, {"seed": 42})
    assert default.seed == 42  # the run's seed, unless the options set one
