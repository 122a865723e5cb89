"""Dynamic sampling by semantic entropy: generation rounds fill the batch with accepted groups only; with a full batch
the step is the step on those groups alone (trivially exact), with 2 processes and gradient accumulation too; a batch
left short trains on what it has (exactly, as the filter) or skips; the question stream resumes where it stopped.

Scripted completions (tests/helpers/scripted.py): the dataset is [unanimous, all-different, mixed, mixed], so the
first round (the dataloader's first two questions) is rejected whole and later rounds must find the two mixed ones."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from scripted import (
    KEPT,
    SCRIPT,
    G,
    assert_same_gradients,
    free_port,
    generation_batch,
    lora_step_gradients,
    make_trainer,
)

from empo.configs import EmpoArguments
from empo.errors import ConfigError
from empo.recipe import validate
from empo.training.dynamic_sampling import RefillSampler, RoundSizer

HERE = Path(__file__).resolve().parent / "helpers"
Q = list(SCRIPT)
ORDER = [Q[0], Q[3], Q[1], Q[2]]  # dataset order: ids "0" (unanimous), "1" (all different), "2", "3" (mixed)
DYNAMIC = dict(dynamic_sampling=True, max_sampling_rounds=8)


def trained_ids(out_dir: Path) -> list[str]:
    rows = [json.loads(line) for line in (out_dir / "samples.jsonl").read_text().splitlines()]
    return [r["id"] for r in rows if r["kept"]]


def test_rounds_fill_the_batch_with_accepted_groups_only(tmp_path, tiny):
    trainer = make_trainer(tmp_path, tiny, ORDER, per_device=G * 2, **DYNAMIC)
    trainer.model.train()
    out = trainer._generate_and_score_completions(generation_batch(trainer, ORDER[:2]))
    assert out["completion_mask"].shape[0] == G * 2
    assert out["completion_mask"].sum(dim=1).gt(0).all()  # no filler: every row belongs to an accepted group
    assert out["advantages"].abs().sum() > 0 and out["empo_loss_scale"].item() == 1.0
    assert out["num_items_in_batch"].item() == out["completion_mask"].sum().item()
    m = trainer._metrics["train"]
    assert m["empo/groups_trained"] == [2.0] and m["empo/sampling_rounds"][0] >= 2
    assert m["empo/groups_rejected"][0] >= 2 and m["empo/questions_sampled"][0] == 2 * m["empo/sampling_rounds"][0]
    assert sorted(trained_ids(tmp_path / "out")) == ["2", "3"]
    rounds = [json.loads(line)["round"] for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert rounds[:2] == [0, 0] and max(rounds) == m["empo/sampling_rounds"][0] - 1


def test_the_step_metrics_are_those_of_the_groups_that_trained(tmp_path, tiny):
    trainer = make_trainer(tmp_path / "d", tiny, ORDER, per_device=G * 2, **DYNAMIC)
    alone = make_trainer(tmp_path / "a", tiny, KEPT, per_device=G * 2)  # the accepted groups, sampled alone
    for t, questions in ((trainer, ORDER[:2]), (alone, KEPT)):
        t.model.train()
        t._generate_and_score_completions(generation_batch(t, questions))
    m, ref = trainer._metrics["train"], alone._metrics["train"]
    for key in ("completions/mean_length", "completions/max_length", "reward", "reward_std", "rewards/empo/mean",
                "empo/entropy_mean", "empo/majority_ratio_mean", "empo/no_answer_rate", "empo/num_clusters_mean"):
        assert m[key] == pytest.approx(ref[key]), key  # one value: the trained groups'
    rounds = m["empo/sampling_rounds"][0]
    assert len(m["sampled/completions/mean_length"]) == len(m["sampled/empo/entropy_mean"]) == rounds
    assert m["sampled/empo/entropy_mean"][0] != pytest.approx(ref["empo/entropy_mean"][0])  # round 0: rejected groups


@pytest.mark.parametrize("loss_type", ["dapo", "grpo"])  # token- and sequence-normalised
def test_a_full_batch_trains_like_the_accepted_groups_alone(tmp_path, tiny, loss_type):
    torch.set_num_threads(1)
    dynamic, trainer = lora_step_gradients(tmp_path / "d", tiny, ORDER, loss_type, per_device=G * 2, **DYNAMIC)
    alone, _ = lora_step_gradients(tmp_path / "a", tiny, KEPT, loss_type, per_device=G * 2)
    assert sorted(trained_ids(tmp_path / "d" / "out")) == ["2", "3"]
    assert trainer.step_gate.skipped == 0
    assert_same_gradients(dynamic, alone)


def test_a_short_batch_trains_on_what_it_has_or_skips(tmp_path, tiny):
    torch.set_num_threads(1)
    short = [Q[0], Q[1]]  # one round, one accepted group
    got, _ = lora_step_gradients(tmp_path / "t", tiny, short, "dapo", per_device=G * 2, dynamic_sampling=True,
                                 max_sampling_rounds=1)
    alone, _ = lora_step_gradients(tmp_path / "a", tiny, [Q[1]], "dapo", per_device=G)
    assert_same_gradients(got, alone)
    skip = make_trainer(tmp_path / "s", tiny, short, per_device=G * 2, dynamic_sampling=True, max_sampling_rounds=1,
                        dynamic_sampling_unfilled="skip")
    before = {k: v.clone() for k, v in skip.model.state_dict().items()}
    skip.train()
    assert skip.step_gate.skipped == 1
    assert all(torch.equal(before[k], v) for k, v in skip.model.state_dict().items())


def test_two_processes_with_gradient_accumulation(tmp_path, tiny):
    # 2 processes x 2 rows x 2 accumulation steps: each group of 4 is split over micro-steps, a round's two groups
    # over the processes; the step must equal one process on the two accepted groups
    torch.set_num_threads(1)
    out = tmp_path / "dyn.json"
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [torchrun, "--nproc_per_node", "2", "--master_port", str(free_port()), str(HERE / "dynamic_check.py"),
           str(out), tiny, "0,3,1,2", "2", "2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert sorted(result["trained"]) == ["2", "3"] and result["metrics"]["empo/groups_trained"] == 2
    alone, _ = lora_step_gradients(tmp_path / "a", tiny, KEPT, "dapo", per_device=G * 2)
    assert_same_gradients({k: torch.tensor(v) for k, v in result["grads"].items()}, alone)


def test_the_question_stream_resumes_where_it_stopped(tmp_path, tiny):
    stream = RefillSampler(5, seed=3)
    first = stream.take(7)  # crosses into the second permutation
    state = stream.state_dict()
    rest = stream.take(6)
    resumed = RefillSampler(5, seed=3)
    resumed.load_state_dict(state)
    assert resumed.take(6) == rest and sorted(first[:5]) == list(range(5))
    # a run stopped after step 1 and resumed draws, at step 2, the questions the uninterrupted run drew
    def step_rows(out, step):
        rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
        return [(r["round"], r["id"], r["kept"]) for r in rows if r["step"] == step]

    whole = make_trainer(tmp_path / "whole", tiny, ORDER, per_device=G * 2, save_strategy="steps", save_steps=1,
                         max_steps=2, **DYNAMIC)
    whole.train()
    first = make_trainer(tmp_path / "cut", tiny, ORDER, per_device=G * 2, save_strategy="steps", save_steps=1,
                         max_steps=1, **DYNAMIC)
    first.train()
    saved = json.loads((tmp_path / "cut" / "out" / "checkpoint-1" / "empo_trainer_state.json").read_text())
    assert saved["refill_sampler"] == first._refill.state_dict() and saved["refill_sampler"]["position"] > 0
    assert saved["round_sizer"] == first._round_sizer.state_dict() and saved["round_sizer"]["sampled"] > 0
    resumed = make_trainer(tmp_path / "cut", tiny, ORDER, per_device=G * 2, save_strategy="steps", save_steps=1,
                           max_steps=2, **DYNAMIC)
    resumed.train(resume_from_checkpoint=str(tmp_path / "cut" / "out" / "checkpoint-1"))
    assert step_rows(tmp_path / "cut" / "out", 1) == step_rows(tmp_path / "whole" / "out", 1) != []
    assert resumed._refill.state_dict() == whole._refill.state_dict()
    assert resumed._round_sizer.state_dict() == whole._round_sizer.state_dict()


def test_shortfall_rounds_are_the_missing_groups_over_the_running_acceptance_rate():
    whole = RoundSizer("generation_batch", need=2, group_size=8, num_processes=1)
    whole.update(0, 2)
    assert whole.size(1) == whole.size(2) == 2
    sizer = RoundSizer("shortfall", need=4, group_size=8, num_processes=1, cap=2.0)
    assert sizer.acceptance_rate == 0.5 and sizer.size(1) == 2 and sizer.size(3) == 6  # Laplace: 1/2 at first
    sizer.update(accepted=2, sampled=10)  # (2 + 1) / (10 + 2) = 1/4
    assert sizer.size(1) == 4 and sizer.size(2) == 8 and sizer.size(3) == 8  # at most 2 generation batches
    sizer.update(accepted=100, sampled=100)  # 103 / 112: 3 / 0.92 = 3.26, rounded up
    assert sizer.size(3) == 4
    odd = RoundSizer("shortfall", need=4, group_size=1, num_processes=2)
    assert odd.size(1) == 2 and odd.size(3) == 6  # 3/0.5 = 6; and a whole number of rows per process
    odd.update(1, 3)  # 2/5: ceil(1 / 0.4) = 3 questions, one row each: 4 so that 2 processes get 2 each
    assert odd.size(1) == 4
    restored = RoundSizer("shortfall", need=4, group_size=8, num_processes=1)
    restored.load_state_dict(sizer.state_dict())
    assert restored.size(3) == sizer.size(3) and restored.acceptance_rate == sizer.acceptance_rate


def test_a_shortfall_round_takes_the_questions_the_rate_says(tmp_path, tiny):
    # round 0 (the dataloader's two questions) is rejected whole: rate (0 + 1) / (2 + 2) = 1/4, so the second round
    # takes min(2 / (1/4), 2 x 2) = 4 questions -- the whole stream, both mixed ones with it: two rounds, not three+
    trainer = make_trainer(tmp_path, tiny, ORDER, per_device=G * 2, sampling_round_size="shortfall", **DYNAMIC)
    trainer.model.train()
    trainer._generate_and_score_completions(generation_batch(trainer, ORDER[:2]))
    m = trainer._metrics["train"]
    assert m["empo/sampling_rounds"] == [2.0] and m["empo/questions_sampled"] == [6.0]
    assert m["empo/groups_trained"] == [2.0] and sorted(trained_ids(tmp_path / "out")) == ["2", "3"]
    assert m["empo/acceptance_rate"] == [pytest.approx(3 / 8)]  # 2 of 6 accepted, Laplace's rule


def test_settings_without_a_criterion_or_that_standardise_over_the_batch_are_refused(tmp_path):
    from trl import GRPOConfig

    args = GRPOConfig(output_dir=str(tmp_path), num_generations=G, per_device_train_batch_size=G, use_cpu=True,
                      bf16=False, report_to="none")
    with pytest.raises(ConfigError, match="dynamic_sampling needs a criterion"):
        validate(EmpoArguments(dynamic_sampling=True, entropy_filter=False), args)
    validate(EmpoArguments(dynamic_sampling=True, entropy_filter=False, min_majority_share=0.5), args)
    with pytest.raises(ConfigError, match="dynamic_sampling_unfilled"):
        validate(EmpoArguments(dynamic_sampling=True, dynamic_sampling_unfilled="wait"), args)
    with pytest.raises(ConfigError, match="max_sampling_rounds"):
        validate(EmpoArguments(dynamic_sampling=True, max_sampling_rounds=0), args)
    batch_std = GRPOConfig(output_dir=str(tmp_path), num_generations=G, per_device_train_batch_size=G, use_cpu=True,
                           bf16=False, report_to="none", scale_rewards="batch")
    # the rejected groups would enter the std of the accepted ones
    with pytest.raises(ConfigError, match="scale_rewards .batch."):
        validate(EmpoArguments(dynamic_sampling=True, entropy_filter=False, min_majority_share=0.5), batch_std)
