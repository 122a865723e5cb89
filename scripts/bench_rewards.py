"""Seconds per group of G for every shipped reward, called as the trainer calls it, and the cost of the token
statistics hook on the default model; with the kit's verdict per property. Writes one JSON with its provenance.

    python scripts/bench_rewards.py --threads 2 --output eval/results/benchmarks/rewards_cpu.json

A reward's time excludes the group view (the trainer clusters a batch once for all its rewards) and the token
statistics (measured apart: one no-grad forward pass of the policy per generation batch, whichever rewards read it);
token rewards get the kit's stand-in statistics here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def reward_seconds(name: str, g: int, groups: int, repeats: int) -> float:
    from empo.clustering.groups import gather_groups
    from empo.clustering.math_clusters import MathClusterer
    from empo.rewards.kit import _stand_in_stats, _token_ids, batch, build

    func = build(name, None, g)

    def call_kwargs(take: int) -> dict:
        # every call's texts are new (a suffix per take), so no cache of a reward's (novelty's embeddings) is timed
        columns = batch(g, groups)
        texts = [f"{t} (take {take})" for t in columns["completions"]]
        rows = [{"problem": p, "answer": a, "id": i} for p, a, i in zip(columns["problem"], columns["answer"],
                                                                        columns["id"])]
        refs = gather_groups(texts, rows, MathClusterer(), g).local_refs()  # the trainer's part, not timed
        ids = [_token_ids(t) for t in texts]
        return dict(prompts=columns["prompts"], completions=texts, completion_ids=ids, empo_group=refs,
                    token_stats=[_stand_in_stats(x) for x in ids], trainer_state=type("S", (), {"global_step": 0})(),
                    log_metric=lambda *a: None, log_extra=lambda *a: None, problem=columns["problem"],
                    id=columns["id"], answer=columns["answer"])

    func(**call_kwargs(-1))  # warm: a model loads once (novelty's embedder), math-verify's worker starts
    times = []
    for take in range(repeats):
        kwargs = call_kwargs(take)
        started = time.perf_counter()
        func(**kwargs)
        times.append(time.perf_counter() - started)
    return statistics.median(times) / groups


def hook_seconds(g: int, groups: int, completion_tokens: int, repeats: int) -> dict[str, float]:
    """EmpoTrainer.token_statistics on the default model: a generation batch of groups x G completions."""
    import datasets
    from trl import GRPOConfig

    from empo.configs import EmpoArguments
    from empo.model import DEFAULT_MODEL, load_model, load_tokenizer
    from empo.rewards import build_reward
    from empo.training.trainer import EmpoTrainer

    tok = load_tokenizer(DEFAULT_MODEL)
    config = GRPOConfig(output_dir="/tmp/bench_rewards", num_generations=g, per_device_train_batch_size=g * groups,
                        max_completion_length=completion_tokens, bf16=False, use_cpu=True, report_to="none",
                        temperature=0.8, save_strategy="no")
    ds = datasets.Dataset.from_list([{"prompt": [{"role": "user", "content": "What is 2 + 3?"}]}] * (g * groups))
    trainer = EmpoTrainer(model=load_model(DEFAULT_MODEL, dtype="float32"),
                          reward_funcs=[build_reward("token_entropy", g)], args=config, train_dataset=ds,
                          processing_class=tok, empo_args=EmpoArguments())
    text = tok.apply_chat_template([{"role": "user", "content": "What is 27 + 38? Put the answer in \\boxed{}."}],
                                   add_generation_prompt=True, tokenize=False)
    prompt = tok(text, add_special_tokens=False)["input_ids"]
    completion = tok("Let me add the tens and the ones. " * 20, add_special_tokens=False)["input_ids"]
    completion = completion[:completion_tokens]
    out = {}
    for wanted in (("entropies",), ("self_certainty",)):
        times = []
        for _ in range(repeats + 1):
            ids = [list(completion) for _ in range(g * groups)]
            batch = trainer.generations.open([prompt] * len(ids), ids)
            started = time.perf_counter()
            trainer.token_statistics(batch, wanted)
            times.append(time.perf_counter() - started)
        out["+".join(wanted)] = statistics.median(times[1:]) / groups  # the first pass warms up
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-G", type=int, default=8)
    p.add_argument("--groups", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--completion-tokens", type=int, default=48, help="the CPU default's max_completion_length")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--output", default="eval/results/benchmarks/rewards_cpu.json")
    a = p.parse_args()

    from empo.model import set_threads
    from empo.provenance import provenance
    from empo.rewards.kit import check_reward
    from empo.rewards.registry import shipped

    set_threads(a.threads)
    rows = {}
    for name in shipped():
        verdict = {r.property: r.status for r in check_reward(name, raise_on_failure=False)}
        seconds = reward_seconds(name, a.G, a.groups, a.repeats)
        rows[name] = {"seconds_per_group": seconds, "kit": verdict}
        print(f"{name:<16} {seconds * 1000:8.2f} ms per group of {a.G}   kit: "
              + " ".join(f"{k}={v}" for k, v in verdict.items()), file=sys.stderr)
    hook = hook_seconds(a.G, a.groups, a.completion_tokens, a.repeats)
    for k, v in hook.items():
        print(f"token statistics ({k}): {v * 1000:.1f} ms per group of {a.G} x {a.completion_tokens} tokens",
              file=sys.stderr)
    result = {"G": a.G, "groups_per_call": a.groups, "threads": a.threads, "rewards": rows,
              "token_statistics_seconds_per_group": hook, "completion_tokens": a.completion_tokens,
              "provenance": provenance(["python", *sys.argv])}
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    Path(a.output).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {a.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
