"""Check the launch plan's memory formula against measured GRPO training steps on CPU (issue 21).

For each shape -- a randomly initialised model of the Qwen2.5 architecture (grouped-query attention, the 151,936-token
vocabulary, an untied output layer), small enough for 2 cores -- one fresh process builds the model, an EmpoTrainer
whose generation returns completions of exactly the shape's length (random tokens, so every row has the shape), and
trains two optimizer steps (the random reward, so the advantages are not zero). Measured: the process's peak resident
memory over the two steps (``VmHWM``, the kernel's high-water mark, reset just before them through
``/proc/self/clear_refs``) minus its resident memory just before them (the model and the trainer
built). The second step is the one a long run repeats: the Adam moments made by the first are resident while its
forward and backward run, so its peak is the moments + gradients + activations + log-prob head that the plan adds
on top of the weights (on a GPU, the resident terms plus the forward/backward phase). Planned: those terms of
``empo.launch.memory`` for the same shape on CPU: fp32, torch's flash SDPA (no [T x T] scores kept), TRL's log-prob
head scoring every position through its torch fallback (``FALLBACK_LIVE_TILES`` tiles, where a GPU's Triton kernel
holds one).

    python scripts/plan_memory_cpu.py --output eval/results/plan_memory_cpu   # report.md + results.json

RSS, with glibc's mmap threshold fixed at 64 KiB (``MALLOC_ENV``) so that a freed tensor leaves it. What RSS cannot
separate: the terms are measured together (one peak per shape), and Python's own allocations during the steps are in
the measurement, not in the plan. Where CPU and GPU differ: fp32 here, bf16 there; every position scored through the
torch fallback here, the completion tokens through one Triton tile there; no CUDA context or caching allocator here.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

VOCAB = 151936  # Qwen2.5's
TOLERANCE = 0.20  # issue 21: measured within 20% of planned, or the miss explained
LORA_RANK, LORA_TARGETS = 16, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# glibc returns freed blocks under its (dynamic, up to 32 MiB) mmap threshold to its heap, not to the OS, so RSS
# would count dead activations; a fixed 64 KiB threshold maps every tensor and unmaps it when freed: RSS tracks the
# live tensors (measured: 5.8 GiB -> 3.3 GiB for the same forward, whose saved tensors sum to 3.3 GiB)
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}
#: name -> shape: hidden, layers, heads, kv heads, MLP width, prompt and completion tokens, G, questions per step, LoRA,
#: gradient checkpointing. Each one makes a different term the largest: the log-prob head (lora-T512, and lora-T2048
#: at the longest sequences, two token chunks of the head), the model states of full fine-tuning (full-T512,
#: full-T1024-G8), the activations (lora-deep-T1024) and their checkpointed form (lora-deep-T1024-ckpt), which the
#: paper recipes use.
SHAPES = {
    "lora-T512": dict(hidden=256, layers=4, heads=4, kv_heads=2, intermediate=1024, prompt=128, completion=384,
                      G=4, questions=2, lora=True, ckpt=False),
    "full-T512": dict(hidden=256, layers=4, heads=4, kv_heads=2, intermediate=1024, prompt=128, completion=384,
                      G=4, questions=2, lora=False, ckpt=False),
    "lora-T2048": dict(hidden=256, layers=4, heads=4, kv_heads=2, intermediate=1024, prompt=512, completion=1536,
                       G=4, questions=1, lora=True, ckpt=False),
    "full-T1024-G8": dict(hidden=384, layers=2, heads=6, kv_heads=2, intermediate=1536, prompt=256, completion=768,
                          G=8, questions=1, lora=False, ckpt=False),
    "lora-deep-T1024": dict(hidden=768, layers=24, heads=12, kv_heads=4, intermediate=3072, prompt=128, completion=896,
                            G=2, questions=1, lora=True, ckpt=False),
    "lora-deep-T1024-ckpt": dict(hidden=768, layers=24, heads=12, kv_heads=4, intermediate=3072, prompt=128,
                                 completion=896, G=2, questions=1, lora=True, ckpt=True),
}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0); False where that is refused.

    Without the reset the peak over the steps is hidden whenever building the model or the trainer peaked higher
    (imports, the random initialisation's temporaries): on a small shape it did, and the step was not measurable.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak() -> int:
    """The peak RSS since the last reset (VmHWM), or since the process started where the reset was refused."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(name: str, s: dict, tokenizer_path: str) -> dict:
    """In this (fresh) process: build the shape's model and trainer, train two steps, return the figures."""
    import datasets
    import torch
    from peft import LoraConfig
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM
    from trl import GRPOConfig

    from empo.configs import EmpoArguments
    from empo.prompts import PRESETS, build_messages
    from empo.rewards import build_reward
    from empo.training.trainer import EmpoTrainer

    torch.manual_seed(0)
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(tokenizer_path)
    config = Qwen2Config(vocab_size=VOCAB, hidden_size=s["hidden"], num_hidden_layers=s["layers"],
                         num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"],
                         intermediate_size=s["intermediate"], max_position_embeddings=4096,
                         tie_word_embeddings=False, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                         bos_token_id=tok.bos_token_id)
    model = Qwen2ForCausalLM(config)

    class FixedLengthTrainer(EmpoTrainer):
        """Completions of exactly the shape's length, never ending early: every row has the planned shape."""

        def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
            generator = torch.Generator().manual_seed(len(prompt_ids))
            ids = torch.randint(100, 40000, (len(prompt_ids), s["completion"]), generator=generator).tolist()
            return ids, None

    words = " ".join(["seven"] * (s["prompt"] - 40))  # the chat template and the worked example take ~40 tokens
    rows = [{"id": str(i), "prompt": build_messages(f"{words} {i}?", PRESETS["qwen-math"]), "answer": "1"}
            for i in range(s["questions"])]
    per_step = s["G"] * s["questions"]
    args = GRPOConfig(output_dir=f"/tmp/plan-memory-{name}", num_generations=s["G"],
                      per_device_train_batch_size=per_step,
                      max_completion_length=s["completion"], max_steps=2, learning_rate=1e-4, bf16=False,
                      gradient_checkpointing=s["ckpt"], use_cpu=True, report_to="none", save_strategy="no", beta=0.0,
                      logging_steps=1, shuffle_dataset=False, seed=0)
    lora = LoraConfig(r=LORA_RANK, lora_alpha=2 * LORA_RANK, target_modules=LORA_TARGETS) if s["lora"] else None
    trainer = FixedLengthTrainer(model=model, reward_funcs=[build_reward("random", s["G"])], args=args,
                                 train_dataset=datasets.Dataset.from_list(rows), processing_class=tok,
                                 peft_config=lora, empo_args=EmpoArguments(entropy_filter=False, stopping="off"))
    prompt_tokens = len(tok.apply_chat_template(rows[0]["prompt"], add_generation_prompt=True, tokenize=True,
                                                return_dict=True)["input_ids"])
    params = sum(p.numel() for p in trainer.model.parameters())
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    import gc

    gc.collect()
    reset = _reset_peak()
    before, peak_before = _rss(), _peak()
    trainer.train()
    peak = _peak()
    return {"shape": name, **s, "prompt_tokens": prompt_tokens, "params": params, "trainable": trainable,
            "rss_before": before, "peak_before": peak_before, "peak": peak, "peak_reset": reset,
            # without the reset, a peak no higher than the one before the steps says nothing about the steps
            "measured_step_bytes": peak - before if reset or peak > peak_before else None}


def planned(result: dict) -> dict[str, float]:
    """The plan's terms for this shape on CPU, in bytes (empo.launch.memory)."""
    from empo.launch import memory

    s = result
    b, T = s["G"] * s["questions"], s["prompt_tokens"] + s["completion"]
    trainable = s["trainable"]
    # torch's CPU attention (SDPA) is a flash kernel: no [T x T] scores are kept (measured: one call keeps its output
    # and the mask, not b x heads x T^2)
    kv_hidden = s["kv_heads"] * s["hidden"] // s["heads"]
    terms = {"gradients (fp32)": 4 * trainable, "Adam moments (fp32)": 8 * trainable,
             "activations (fp32)" + (" (checkpointed)" if s["ckpt"] else ""):
             memory.activations(s["layers"], b, T, s["hidden"], s["intermediate"], kv_hidden, 4, s["ckpt"],
                                lora_rank=LORA_RANK if s["lora"] else 0, lora_modules=len(LORA_TARGETS))}
    # no Triton on CPU: every position scored, by TRL's torch fallback
    terms.update(memory.logprob_head(b * (T - 1), s["hidden"], VOCAB, head_trains=not s["lora"], compute_bytes=4,
                                     weight_copy_bytes=0, live_tiles=memory.FALLBACK_LIVE_TILES))
    return terms


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--output", default="runs/plan_memory_cpu")
    p.add_argument("--shapes", default=",".join(SHAPES))
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: measure one shape (JSON) here
    p.add_argument("--tokenizer", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.one:
        shape = json.loads(a.one)
        print(json.dumps(measure(shape.pop("name"), shape, a.tokenizer)))
        return 0
    from empo.io import atomic_write_json, atomic_write_text
    from empo.model import DEFAULT_MODEL, resolve_model_path
    from empo.provenance import provenance

    tokenizer = resolve_model_path(DEFAULT_MODEL)
    results = []
    for name in a.shapes.split(","):
        print(f"[plan-memory] {name}", file=sys.stderr)
        proc = subprocess.run([sys.executable, __file__, "--one", json.dumps({"name": name, **SHAPES[name]}),
                               "--tokenizer", tokenizer], capture_output=True, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "2", **MALLOC_ENV})
        if proc.returncode:
            sys.stderr.write(proc.stderr[-3000:])
            return proc.returncode
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result["planned_terms"] = planned(result)
        results.append(result)
    meta = provenance(["python", "scripts/plan_memory_cpu.py", *(argv or sys.argv[1:])])
    out = Path(a.output)
    atomic_write_json(out / "results.json", {"provenance": meta, "results": results})
    atomic_write_text(out / "report.md", report(results, meta))
    print((out / "report.md").read_text())
    return 0


def report(results: list[dict], meta: dict) -> str:
    from empo.provenance import format_provenance

    mib = 2**20
    lines = ["# The plan's memory formula against a measured training step on CPU", "",
             "Two GRPO optimizer steps per shape, each shape in a fresh process (`scripts/plan_memory_cpu.py`, whose "
             "docstring says how it measures). Measured: peak RSS over the steps minus RSS before them. Planned: the "
             "terms of `empo/launch/memory.py` a step adds on top of the weights, for the same shape on CPU. MiB; "
             f"the target: within {TOLERANCE:.0%}.", "",
             format_provenance(meta), "",
             "| shape | params (trainable) | tokens / step | planned | measured | measured / planned | planned terms |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        total = sum(r["planned_terms"].values())
        measured = r["measured_step_bytes"]
        ratio = f"{measured / total:.2f}" if measured else "-"
        shown = f"{measured / mib:,.0f}" if measured else "not measurable"
        terms = "; ".join(f"{k} {v / mib:,.0f}" for k, v in r["planned_terms"].items())
        tokens = r["G"] * r["questions"] * (r["prompt_tokens"] + r["completion"])
        lines.append(f"| {r['shape']} | {r['params'] / 1e6:.1f}M ({r['trainable'] / 1e6:.2f}M) | {tokens:,} | "
                     f"{total / mib:,.0f} | {shown} | {ratio} | {terms} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
