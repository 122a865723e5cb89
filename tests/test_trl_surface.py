"""A TRL upgrade tells what broke: every private TRL/transformers name empo overrides, calls or reads still exists
with the parameters empo was written against (empo.training.trl_surface; the table in docs/development.md)."""

from empo.training import trl_surface


def test_the_private_surface_empo_relies_on_is_as_written():
    problems = trl_surface.check_surface()
    assert not problems, "\n".join(problems)


def test_a_changed_or_missing_method_is_named(monkeypatch):
    from trl import GRPOTrainer

    monkeypatch.setattr(GRPOTrainer, "_generate", lambda self, prompts, extra: None)
    monkeypatch.delattr(GRPOTrainer, "_get_per_token_logps_and_entropies")
    problems = "\n".join(trl_surface.check_surface())
    assert "trl.GRPOTrainer._generate (overrides: keeps the prompt and completion ids): parameters" in problems
    assert "trl.GRPOTrainer._get_per_token_logps_and_entropies (calls: the rewards' token statistics): missing" \
        in problems


def test_every_override_of_the_trainer_is_listed():
    import inspect

    from trl import GRPOTrainer

    from empo.training.trainer import EmpoTrainer

    overridden = {n for n, v in vars(EmpoTrainer).items() if inspect.isfunction(v) and hasattr(GRPOTrainer, n)
                  and n != "__init__"}
    listed = {name for (owner, name) in trl_surface.SURFACE if owner == "trl.GRPOTrainer"}
    assert overridden <= listed, f"EmpoTrainer overrides {sorted(overridden - listed)} without listing them"


def test_the_manual_lists_the_same_surface():
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "development.md").read_text()
    missing = [f"{owner}.{name}" for owner, name in trl_surface.SURFACE if f"`{owner}.{name}`" not in page]
    assert not missing, f"docs/development.md does not list {missing}"
