"""Seconds per GRPO step and tokens/s: EmpoTrainer (EMPO reward + entropy filter) vs plain trl.GRPOTrainer with a
trivial reward, same model, config and seeds. Each variant runs in its own process (clean peak RSS).

    python scripts/bench_train_step.py --steps 4 --questions 2 -G 8 --max-completion-length 32
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys


def run_variant(variant: str, a) -> dict:
    import datasets
    from bench_common import recipe_lora, step_timer
    from trl import GRPOConfig, GRPOTrainer

    from empo.configs import EmpoArguments
    from empo.data import DataSpec, load_questions
    from empo.model import load_model, load_tokenizer, set_threads
    from empo.prompts import build_messages, get_prompt_config
    from empo.rewards import build_reward
    from empo.training.trainer import EmpoTrainer

    set_threads(a.threads)
    prompt = get_prompt_config(None)
    rows = [{"id": q["id"], "prompt": build_messages(q["problem"], prompt), "answer": q["answer"]}
            for q in load_questions(DataSpec(name="arith", split="train", limit=a.questions * (a.steps + 1)))]
    config = GRPOConfig(output_dir=f"/tmp/bench_{variant}", num_generations=a.G,
                        per_device_train_batch_size=a.G * a.questions, max_completion_length=a.max_completion_length,
                        max_steps=a.steps, learning_rate=5e-5, bf16=False, gradient_checkpointing=False, use_cpu=True,
                        report_to="none", logging_steps=1, save_strategy="no", seed=42, temperature=0.8)
    lora = recipe_lora()
    step_times: list[float] = []

    def trivial(prompts, completions, **kwargs):
        return [float(len(str(c)) % 2) for c in completions]

    common = dict(model=load_model(a.model), args=config, train_dataset=datasets.Dataset.from_list(rows),
                  processing_class=load_tokenizer(a.model), peft_config=lora, callbacks=[step_timer(step_times)])
    if variant == "empo":
        trainer = EmpoTrainer(reward_funcs=[build_reward("empo", a.G)], empo_args=EmpoArguments(), **common)
    else:
        trainer = GRPOTrainer(reward_funcs=[trivial], **common)
    trainer.train()
    tokens = trainer.state.num_input_tokens_seen
    steady = step_times[1:] or step_times  # the first step pays one-off costs (worker start, caches)
    return {"variant": variant, "s_per_step": sum(steady) / len(steady), "step_times": step_times,
            "tokens_per_s": tokens / sum(step_times),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--questions", type=int, default=2)
    p.add_argument("-G", type=int, default=8)
    p.add_argument("--max-completion-length", type=int, default=32)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--variant", choices=["empo", "trl"], help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.variant:
        print("RESULT " + json.dumps(run_variant(a.variant, a)))
        return
    results = {}
    for variant in ("trl", "empo"):
        cmd = [sys.executable, __file__, "--variant", variant] + sys.argv[1:]
        out = subprocess.run(cmd, capture_output=True, text=True)
        line = next((line for line in out.stdout.splitlines() if line.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"{variant} failed:\n{out.stderr[-3000:]}")
        results[variant] = json.loads(line[7:])
    print(f"{'variant':>8} | {'s/step':>8} | {'tok/s':>8} | {'peak RSS MB':>11} | steps (s)")
    for r in results.values():
        print(f"{r['variant']:>8} | {r['s_per_step']:8.2f} | {r['tokens_per_s']:8.1f} | {r['peak_rss_mb']:11.0f} | "
              + " ".join(f"{t:.1f}" for t in r["step_times"]))
    ratio = results["empo"]["s_per_step"] / results["trl"]["s_per_step"]
    print(f"EmpoTrainer / GRPOTrainer time per step: {ratio:.3f}x")


if __name__ == "__main__":
    main()
