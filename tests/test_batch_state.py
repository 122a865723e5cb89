"""The trainer's state between TRL's hooks (empo.training.batch_state): a hook that reads another generation batch's
state fails loudly; the optimizer step's decision is taken once per step and counted; the trainer keeps that count
across a resume."""

import json

import pytest
from scripted import SCRIPT, generation_batch, make_trainer

from empo.training.batch_state import BatchStateError, GenerationLedger, StepGate

QUESTIONS = list(SCRIPT)


def test_each_hook_reads_only_its_own_generation():
    ledger = GenerationLedger()
    first_ids = [[1, 2], [3]]
    first = ledger.open([[9], [9]], first_ids)
    assert ledger.to_score(first_ids) is first
    with pytest.raises(BatchStateError, match="not those of the last generation"):
        ledger.to_score([[1, 2], [3]])  # equal ids, but not this generation's list
    with pytest.raises(BatchStateError, match="expected generation 1, scored; found generation 1, unscored"):
        ledger.scored(1)
    first.groups, first.rewards = "groups", "rewards"
    assert ledger.scored(1) is first
    with pytest.raises(BatchStateError, match="scored already"):
        ledger.to_score(first_ids)
    assert first.take_ids() == ([[9], [9]], first_ids)
    with pytest.raises(BatchStateError, match="already computed"):
        first.take_ids()
    ledger.open([[9]], [[4]])  # the next generation
    with pytest.raises(BatchStateError, match="expected generation 1, scored; found generation 2"):
        ledger.scored(1)


def test_the_step_gate_decides_once_per_optimizer_step():
    gate, sums = StepGate(), []
    reduce_sum = lambda x: sums.append(x) or x  # noqa: E731 - one process
    assert gate.allows_step(reduce_sum) == (True, False)  # before any micro-step: no training step, runs, no collective
    gate.micro_step(0)
    gate.micro_step(3)
    assert gate.allows_step(reduce_sum) == (True, True) and gate.allows_step(reduce_sum) == (True, False)
    gate.micro_step(0)
    assert gate.allows_step(reduce_sum) == (False, True) and gate.allows_step(reduce_sum) == (False, False)
    assert sums == [3.0, 0.0] and gate.skipped == 1


def test_a_hook_out_of_order_fails_loudly(tmp_path, tiny):
    trainer = make_trainer(tmp_path, tiny, QUESTIONS)
    trainer.model.train()
    trainer._generate_and_score_completions(generation_batch(trainer, QUESTIONS))
    rows = generation_batch(trainer, QUESTIONS)
    with pytest.raises(BatchStateError, match="not those of the last generation"):  # scoring without generating
        trainer._calculate_rewards(rows, [r["prompt"] for r in rows], ["x"] * len(rows), [[1]] * len(rows))


def test_the_skipped_step_count_survives_a_resume(tmp_path, tiny):
    questions = [QUESTIONS[0], QUESTIONS[3]]  # every group filtered: every step skipped
    trainer = make_trainer(tmp_path, tiny, questions, per_device=8, max_steps=2, save_strategy="steps", save_steps=2)
    trainer.train()
    state = json.loads((tmp_path / "out" / "checkpoint-2" / trainer.STATE_FILE).read_text())
    assert state == {"skipped_optimizer_steps": 2}
    resumed = make_trainer(tmp_path, tiny, questions, per_device=8, max_steps=3, save_strategy="no")
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-2"))
    logged = [r["empo/skipped_optimizer_steps"] for r in resumed.state.log_history
              if "empo/skipped_optimizer_steps" in r]
    assert resumed.step_gate.skipped == 3 and logged[-1] == 3.0  # not 1: the run's count, not this process's
