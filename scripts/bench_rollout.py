"""HF ``generate`` vs vLLM on the default model: tokens/s of rollouts and seconds per GRPO step, weight sync included.

Same prompts (held-out arithmetic, the boxed-example prompt), G, max tokens, temperature, dtype and threads for
every variant; each variant runs in its own process so that one engine's threads and memory do not slow another.

- ``hf-generate`` / ``vllm-generate``: ``empo rollout``'s generators over ``--questions`` questions in calls of
  ``--batch-size`` questions (one warm-up call first, not counted).
- ``vllm-lora-generate``: the same engine serving a LoRA adapter through vLLM LoRA requests, the alternative to
  merging the adapter into the engine's weights (what the trainer's sync does).
- ``hf-train`` / ``vllm-train``: EmpoTrainer GRPO steps (LoRA, the CPU recipe's sizes) with HF or colocated vLLM
  rollouts; the vLLM time per step includes the merged-weight sync, also reported on its own.

    python scripts/bench_rollout.py                     # all variants (~10 min on 2 cores)
    python scripts/bench_rollout.py --only hf-generate,vllm-generate
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

VARIANTS = ["hf-generate", "vllm-generate", "vllm-lora-generate", "hf-train", "vllm-train"]


def questions(a, split="test", n=None):
    from empo.data import DataSpec, load_questions

    return load_questions(DataSpec(name="arith", split=split, limit=n or a.questions))


def make_adapter(a, out_dir: str) -> str:
    """A rank-16 LoRA adapter on every linear layer with non-zero weights (an untrained adapter is a no-op)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from empo.model import load_model

    torch.manual_seed(0)
    model = get_peft_model(load_model(a.model), LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                           init_lora_weights=False, task_type="CAUSAL_LM"))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data.mul_(1e-3)  # small: the adapted model still answers like the base one
    model.save_pretrained(out_dir)
    return out_dir


def bench_generate(variant: str, a) -> dict:
    from empo.model import load_model, load_tokenizer, set_threads
    from empo.prompts import build_messages, get_prompt_config
    from empo.rollout.hf import HFGenerator, SamplingConfig

    threads = set_threads(a.threads)
    tok = load_tokenizer(a.model)
    prompt = get_prompt_config("boxed-example")
    sampling = SamplingConfig(num_generations=a.G, temperature=a.temperature, max_new_tokens=a.max_new_tokens)
    t0 = time.perf_counter()
    if variant == "hf-generate":
        gen = HFGenerator(load_model(a.model, dtype=a.dtype), tok)
    else:
        from empo.rollout.vllm_engine import VLLMGenerator

        lora = variant == "vllm-lora-generate"
        gen = VLLMGenerator(a.model, tok, dtype=a.dtype, num_threads=threads,
                            **({"enable_lora": True, "max_lora_rank": 16, "max_loras": 1} if lora else {}))
        if lora:
            import functools

            from vllm.lora.request import LoRARequest

            path = make_adapter(a, tempfile.mkdtemp(prefix="bench-lora-"))
            gen.llm.generate = functools.partial(gen.llm.generate, lora_request=LoRARequest("bench", 1, path))
    start_s = time.perf_counter() - t0
    qs = questions(a)
    gen.generate_groups([build_messages(q["problem"], prompt) for q in qs[:2]], sampling, "warmup")
    tokens, t0 = 0, time.perf_counter()
    for i in range(0, len(qs), a.batch_size):
        batch = qs[i:i + a.batch_size]
        groups = gen.generate_groups([build_messages(q["problem"], prompt) for q in batch], sampling, batch[0]["id"])
        tokens += sum(s.num_tokens for g in groups for s in g)
    seconds = time.perf_counter() - t0
    return {"variant": variant, "engine_start_s": start_s, "tokens": tokens, "seconds": seconds,
            "tokens_per_s": tokens / seconds, "threads": threads}


def bench_train(variant: str, a) -> dict:
    import datasets
    from bench_common import recipe_lora, step_timer
    from trl import GRPOConfig

    from empo.configs import EmpoArguments
    from empo.model import load_model, load_tokenizer, set_threads
    from empo.prompts import build_messages, get_prompt_config
    from empo.rewards import build_reward
    from empo.training.trainer import EmpoTrainer

    threads = set_threads(a.threads)
    prompt = get_prompt_config("boxed-example")
    rows = [{"id": q["id"], "prompt": build_messages(q["problem"], prompt), "answer": q["answer"]}
            for q in questions(a, "train", a.train_questions * (a.steps + 1))]
    vllm = variant == "vllm-train"
    config = GRPOConfig(output_dir=tempfile.mkdtemp(prefix=f"bench-{variant}-"), num_generations=a.G,
                        per_device_train_batch_size=a.G * a.train_questions, max_completion_length=a.max_new_tokens,
                        temperature=a.temperature, max_steps=a.steps, learning_rate=1e-4, beta=0.0, loss_type="dapo",
                        bf16=False, gradient_checkpointing=False, use_cpu=True, report_to="none", logging_steps=1,
                        save_strategy="no", seed=42, use_vllm=vllm, vllm_mode="colocate",
                        vllm_gpu_memory_utilization=0.25, vllm_max_model_length=1024)
    lora = recipe_lora()
    step_times: list[float] = []

    t0 = time.perf_counter()
    trainer = EmpoTrainer(model=load_model(a.model, dtype=a.dtype), reward_funcs=[build_reward("empo", a.G)],
                          args=config, train_dataset=datasets.Dataset.from_list(rows),
                          processing_class=load_tokenizer(a.model), peft_config=lora,
                          callbacks=[step_timer(step_times)],
                          empo_args=EmpoArguments())
    start_s = time.perf_counter() - t0
    trainer.train()
    steady = step_times[1:] or step_times  # the first step pays one-off costs
    sync = trainer.vllm_generation.sync_seconds if vllm else []
    return {"variant": variant, "engine_start_s": start_s, "s_per_step": sum(steady) / len(steady),
            "step_times": step_times, "sync_seconds": sync, "threads": threads}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--questions", type=int, default=32, help="generation: questions (x G completions)")
    p.add_argument("--batch-size", type=int, default=16, help="generation: questions per call")
    p.add_argument("-G", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--steps", type=int, default=4, help="training: GRPO steps (the first is not averaged)")
    p.add_argument("--train-questions", type=int, default=2, help="training: questions per step")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--only", default=",".join(VARIANTS), help=f"comma-separated, from: {', '.join(VARIANTS)}")
    p.add_argument("--output", default=None, help="also write the results as JSON here")
    p.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.variant:
        run = bench_train if a.variant.endswith("-train") else bench_generate
        print("RESULT " + json.dumps(run(a.variant, a)), flush=True)
        return
    results = {}
    for variant in [v.strip() for v in a.only.split(",") if v.strip()]:
        cmd = [sys.executable, __file__, "--variant", variant, *sys.argv[1:]]
        out = subprocess.run(cmd, capture_output=True, text=True)
        line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"{variant} failed:\n{out.stderr[-3000:]}")
        results[variant] = r = json.loads(line[7:])
        if "tokens_per_s" in r:
            print(f"{variant:>19}: {r['tokens_per_s']:6.1f} tok/s ({r['tokens']} tokens in {r['seconds']:.1f} s; "
                  f"engine start {r['engine_start_s']:.1f} s)", flush=True)
        else:
            sync = r["sync_seconds"][1:] or r["sync_seconds"]
            steps = " ".join(f"{t:.1f}" for t in r["step_times"])
            print(f"{variant:>19}: {r['s_per_step']:6.2f} s/step (steps: {steps}"
                  + (f"; weight sync {sum(sync) / len(sync):.2f} s/step" if sync else "")
                  + f"; start {r['engine_start_s']:.1f} s)", flush=True)
    for a_, b_, what in (("hf-generate", "vllm-generate", "tok/s"), ("hf-train", "vllm-train", "s/step")):
        if a_ in results and b_ in results:
            ratio = (results[b_]["tokens_per_s"] / results[a_]["tokens_per_s"] if what == "tok/s"
                     else results[a_]["s_per_step"] / results[b_]["s_per_step"])
            print(f"vLLM speed-up ({what}): {ratio:.2f}x")
    if a.output:
        from empo.io import atomic_write_json

        atomic_write_json(a.output, results)


if __name__ == "__main__":
    main()
