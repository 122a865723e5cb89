"""EmpoTrainer on a tiny random model with scripted completions: the filter, the normaliser, skipped steps."""

import json

import pytest
import torch
from scripted import SCRIPT, G, generation_batch, make_trainer

QUESTIONS = list(SCRIPT)  # unanimous, mixed, mixed, all-different


def test_filter_removes_groups_from_loss_and_normaliser(tmp_path, tiny):
    trainer = make_trainer(tmp_path, tiny, QUESTIONS)
    trainer.model.train()
    out = trainer._generate_and_score_completions(generation_batch(trainer, QUESTIONS))
    per_row = out["completion_mask"].sum(dim=1)
    kept = per_row.view(len(QUESTIONS), G).gt(0).all(dim=1).tolist()
    dropped = per_row.view(len(QUESTIONS), G).eq(0).all(dim=1).tolist()
    assert kept == [False, True, True, False] and dropped == [True, False, False, True]
    assert out["num_items_in_batch"].item() == per_row.sum().item()
    assert torch.all(out["advantages"].view(len(QUESTIONS), G)[[0, 3]] == 0)
    assert trainer._metrics["train"]["empo/kept_fraction"][-1] == 0.5
    assert trainer._metrics["train"]["empo/no_answer_rate"][-1] == 1 / 16

    unfiltered = make_trainer(tmp_path, tiny, QUESTIONS, entropy_filter=False)
    unfiltered.model.train()
    full = unfiltered._generate_and_score_completions(generation_batch(unfiltered, QUESTIONS))
    assert full["num_items_in_batch"].item() > out["num_items_in_batch"].item()
    assert full["completion_mask"].sum(dim=1).gt(0).all()


def test_rewards_match_script(tmp_path, tiny):
    trainer = make_trainer(tmp_path, tiny, QUESTIONS, rewards=("empo", "majority_vote", "format"))
    trainer.model.train()
    trainer._generate_and_score_completions(generation_batch(trainer, QUESTIONS))
    rewards = trainer.generations.current.rewards
    expected_empo = [1, 1, 1, 1, .5, .5, .25, 0, .5, .5, .25, .25, .25, .25, .25, .25]
    assert rewards[:, 0].tolist() == expected_empo
    assert rewards[:, 1].tolist() == [1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1]
    assert rewards[:, 2].tolist() == [1] * 7 + [0] + [1] * 8


def test_label_free_reward_ignores_gold_column(tmp_path, tiny):
    right = make_trainer(tmp_path, tiny, QUESTIONS, golds=["2", "5", "8", "1"])  # "1": ties go to the first cluster
    wrong = make_trainer(tmp_path, tiny, QUESTIONS, golds=["7", "1", "3", "0"])
    results = []
    for t in (right, wrong):
        t.model.train()
        out = t._generate_and_score_completions(generation_batch(t, QUESTIONS))
        rewards = t.generations.current.rewards
        results.append((rewards.clone(), out["advantages"].clone(), out["completion_mask"].clone()))
    for a, b in zip(*results):
        assert torch.equal(a, b)
    # ...while the logged gold metrics do see the difference
    assert right._metrics["train"]["empo/majority_accuracy"][-1] == 1.0
    assert wrong._metrics["train"]["empo/majority_accuracy"][-1] == 0.0


def test_what_the_kept_groups_taught_is_logged_against_gold(tmp_path, tiny):
    # kept groups: "2 + 3" (answers 5 5 6 -) and "4 + 4" (8 16/2 7 9); their EMPO advantages favour 5 and 8
    right = make_trainer(tmp_path, tiny, QUESTIONS, golds=["2", "5", "8", "1"])
    wrong = make_trainer(tmp_path, tiny, QUESTIONS, golds=["2", "6", "7", "1"])
    for t in (right, wrong):
        t.model.train()
        out = t._generate_and_score_completions(generation_batch(t, QUESTIONS))
    m = right._metrics["train"]
    assert m["empo/pseudo_label_accuracy"][-1] == 1.0 and m["empo/gold_sign_disagreement"][-1] == 0.0
    m = wrong._metrics["train"]
    # gold 6 and 7: the right completion is pushed down and the two majority ones up, in both groups -> 6 of 8
    assert m["empo/pseudo_label_accuracy"][-1] == 0.0 and m["empo/gold_sign_disagreement"][-1] == 0.75
    # samples.jsonl logs TRL's advantages, the ones the kept groups train with
    lines = (tmp_path / "out" / "samples.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines][-len(QUESTIONS):]
    flat = [a for r in rows for a in r["advantages"]]
    kept = [k for r in rows for k in [r["kept"]] * G]
    trained = [a for a, k in zip(out["advantages"].tolist(), kept) if k]
    assert [a for a, k in zip(flat, kept) if k] == pytest.approx(trained)
    assert sum(kept) == 2 * G and any(a != 0 for a in flat)


def test_all_filtered_batch_moves_no_weight_and_the_schedule_advances(tmp_path, tiny):
    questions = [QUESTIONS[0], QUESTIONS[3]]  # unanimous and all-different: nothing to learn from
    trainer = make_trainer(tmp_path, tiny, questions, per_device=G * 2, max_steps=2, weight_decay=0.5,
                           lr_scheduler_type="linear", warmup_steps=0)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert trainer.step_gate.skipped == 2
    # each step's log counts that step's skip (the run summary reads the last one)
    logged = [r["empo/skipped_optimizer_steps"] for r in trainer.state.log_history
              if "empo/skipped_optimizer_steps" in r]
    assert logged == [1.0, 2.0]
    # the schedule is one of the run's steps (max_steps counts skipped ones): a skipped step advances it as a trained
    # one would, so a decaying schedule still ends where the run ends; Adam's own step count does not move
    assert trainer.lr_scheduler.last_epoch == 2
    assert [r["learning_rate"] for r in trainer.state.log_history if "learning_rate" in r] == pytest.approx(
        [1e-2, 5e-3])
    assert not trainer.optimizer.state  # no Adam step was ever taken


def test_kept_groups_do_train(tmp_path, tiny):
    trainer = make_trainer(tmp_path, tiny, [QUESTIONS[1], QUESTIONS[2]], per_device=G * 2, max_steps=1)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    assert trainer.step_gate.skipped == 0
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    rows = [line for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and '"kept": true' in rows[0]


def test_self_certainty_reward_uses_policy_logits(tmp_path, tiny):
    import math

    trainer = make_trainer(tmp_path, tiny, QUESTIONS, rewards=("self_certainty",))
    trainer.model.train()
    trainer._generate_and_score_completions(generation_batch(trainer, QUESTIONS))
    sc = trainer.generations.current.rewards[:, 0].tolist()
    assert all(math.isfinite(x) and x >= 0 for x in sc)  # KL(uniform || p) >= 0
    assert sc[0] == pytest.approx(sc[1]) == pytest.approx(sc[3])  # identical completions, identical certainty
    assert sc[4] != pytest.approx(sc[6])  # different completions, different certainty


def test_lora_adapter_saves_and_merges(tmp_path, tiny):
    from peft import LoraConfig

    from empo.model import load_model, merge_adapter

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    trainer = make_trainer(tmp_path, tiny, [QUESTIONS[1], QUESTIONS[2]], per_device=G * 2, peft_config=lora)
    trainer.train()
    adapter = tmp_path / "adapter"
    trainer.save_model(str(adapter))
    trainer.processing_class.save_pretrained(str(adapter))
    merged_dir = merge_adapter(str(adapter), str(tmp_path / "merged"), base=tiny)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        peft_logits = load_model(tiny, adapter=str(adapter))(ids).logits
        merged_logits = load_model(merged_dir)(ids).logits
        base_logits = load_model(tiny)(ids).logits
    assert torch.allclose(peft_logits, merged_logits, atol=1e-5)
    assert not torch.allclose(peft_logits, base_logits, atol=1e-5)


def test_free_form_clustering_reaches_the_filter_and_the_rewards(tmp_path, tiny, monkeypatch):
    """clustering: entailment through the trainer: answers are free text, the judge sees the bare question."""
    from test_freeform import ScriptedJudge, both

    from empo.clustering.freeform import FreeformClusterer
    from empo.rewards import build_reward

    def run(judge):
        clusterer = FreeformClusterer("entailment", judge_obj=judge)
        trainer = make_trainer(tmp_path, tiny, QUESTIONS, clustering="entailment")
        trainer.reward_funcs = [build_reward("empo", G, clusterer=clusterer)]
        trainer._clusterer = clusterer
        trainer.train_dataset = trainer.train_dataset.map(lambda r: {"problem": r["prompt"][-1]["content"]})
        trainer.model.train()
        out = trainer._generate_and_score_completions(generation_batch(trainer, QUESTIONS))
        return out["completion_mask"].sum(dim=1).view(len(QUESTIONS), G).gt(0).all(dim=1).tolist(), trainer

    # numbers decide without a judge: "8" and "\frac{16}{2}" are one answering part, so group 3 is kept
    judge = ScriptedJudge()
    kept, trainer = run(judge)
    assert kept == [False, True, True, False] and not [p for p in judge.judged if "8" in p]  # group 3: no judge
    assert trainer.generations.current.rewards[8:12, 0].tolist() == [.5, .5, .25, .25]
    # words need the judge ("VIII" is no number empo reads): without a link group 3 is all-different and dropped
    monkeypatch.setitem(SCRIPT, "What is 4 + 4?", ["eight", "VIII", "7", "9"])
    kept, trainer = run(ScriptedJudge())
    assert kept == [False, True, False, False]
    # the judge links the answering parts "8" and "viii" (both directions): group 3 is kept
    judge = ScriptedJudge(both("8", "viii"))
    kept, trainer = run(judge)
    assert kept == [False, True, True, False]
    assert trainer.generations.current.rewards[8:12, 0].tolist() == [.5, .5, .25, .25]
    assert judge.questions
    assert {q for q, _ in judge.questions} <= set(QUESTIONS)  # the bare question, not the templated prompt
    # the step logs the judge's load: the directed pairs it scored clustering the batch's groups (grading against
    # the gold answers, for the logs, comes after and is not counted)
    import empo.training.trainer as trainer_module

    clustered, real_gather = [], trainer_module.gather_groups

    def gather(*args):
        before = judge.pairs_scored
        out = real_gather(*args)
        clustered.append(judge.pairs_scored - before)
        return out

    monkeypatch.setattr(trainer_module, "gather_groups", gather)
    judge = ScriptedJudge(both("8", "viii"))
    kept, trainer = run(judge)
    assert trainer._metrics["train"]["empo/judge_pairs"] == [float(clustered[0])] and clustered[0] > 0


def test_one_answer_gather_and_one_analysis_per_generation_batch(tmp_path, tiny, monkeypatch):
    """The group rewards score the trainer's groups: the batch's answers are gathered once and each group is
    clustered once, however many group rewards read them."""
    import empo.clustering.groups

    gathers, analyses = [], []
    gather, analyse = empo.clustering.groups.gather_list, empo.clustering.groups.analyse_group
    monkeypatch.setattr(empo.clustering.groups, "gather_list", lambda rows: gathers.append(len(rows)) or gather(rows))
    monkeypatch.setattr(empo.clustering.groups, "analyse_group",
                        lambda *a, **k: analyses.append(a[0]) or analyse(*a, **k))
    trainer = make_trainer(tmp_path, tiny, QUESTIONS, rewards=("empo", "majority_vote", "format"))
    trainer.model.train()
    trainer._generate_and_score_completions(generation_batch(trainer, QUESTIONS))
    assert gathers == [len(QUESTIONS) * G] and len(analyses) == len(QUESTIONS)
    # on its own (outside the trainer) a group reward builds its groups itself, with the same result
    from empo.rewards import build_reward

    completions = [f"The answer is \\boxed{{{a}}}." if a is not None else "I think." for q in QUESTIONS
                   for a in SCRIPT[q]]
    alone = build_reward("empo", G)(prompts=["?"] * len(completions), completions=completions)
    assert alone == trainer.generations.current.rewards[:, 0].tolist() and len(gathers) == 2
