"""The launch plans of the paper recipes, as `empo launch --dry-run` computes them, beside the figures the plan gave
before issue 21 rewrote its memory and time model (README of commit 92e81c0).

    python scripts/plan_table.py > /tmp/plans.md && mv /tmp/plans.md eval/results/launch_plans.md  # not in place: a
    # redirect empties the tracked file first, and the provenance would say +dirty
"""

from __future__ import annotations

import sys
from pathlib import Path

from empo.launch import Cluster, make_plan
from empo.provenance import format_provenance, provenance

R = "recipes"
#: (label, recipe, nodes, GPUs per node, recipe overrides)
CONFIGS = [
    ("1.5B full (paper)", f"{R}/Qwen2.5-Math-1.5B/empo/config_numina20k.yaml", 1, 8, []),
    ("1.5B full, 2 nodes, GA 14", f"{R}/Qwen2.5-Math-1.5B/empo/config_numina20k.yaml", 2, 8,
     ["--gradient_accumulation_steps", "14"]),
    ("1.5B LoRA", f"{R}/Qwen2.5-Math-1.5B/empo/config_numina20k_lora.yaml", 1, 8, []),
    ("7B full (paper)", f"{R}/Qwen2.5-Math-7B/empo/config_numina20k.yaml", 1, 8, []),
    ("7B full, 2 nodes, GA 16", f"{R}/Qwen2.5-Math-7B/empo/config_numina20k.yaml", 2, 8,
     ["--gradient_accumulation_steps", "16"]),
    ("7B LoRA", f"{R}/Qwen2.5-Math-7B/empo/config_numina20k_lora.yaml", 1, 8, []),
    ("3B natural reasoning (paper), 7 GPUs", f"{R}/Qwen2.5-3B/empo/config_natural_reasoning.yaml", 1, 7, []),
    ("7B natural reasoning (paper), 7 GPUs", f"{R}/Qwen2.5-7B/empo/config_natural_reasoning.yaml", 1, 7, []),
]
#: What the plan said before issue 21 (README of commit 92e81c0): GiB per training GPU, s per step, GPU-hours.
BEFORE = {"1.5B full (paper)": (10.5, 22, 120), "1.5B full, 2 nodes, GA 14": (10.0, 21, 238),
          "1.5B LoRA": (8.5, 21, 119), "7B full (paper)": (57.6, 47, 251), "7B full, 2 nodes, GA 16": (49.8, 24, 251),
          "7B LoRA": (46.6, 41, 220), "3B natural reasoning (paper), 7 GPUs": (14.4, 12, 140),
          "7B natural reasoning (paper), 7 GPUs": (28.0, 15, 176)}


def main() -> int:
    lines = ["# Launch plans of the paper recipes", "",
             "`empo launch RECIPE --gpus-per-node G [--nodes N] --dry-run [-- overrides]` on each configuration "
             "(`scripts/plan_table.py`), beside what the plan said before issue 21 rewrote its memory and time model "
             "(README of commit 92e81c0). Estimates from the models' shapes, not measurements: no GPU has run them.",
             "", format_provenance(provenance(["python", "scripts/plan_table.py"])), "",
             "| configuration | GiB / training GPU (before) | of which model states | peak phase | s / step (before) "
             "| generation waves | GPU-hours (before) | disk GB |",
             "|---|---|---|---|---|---|---|---|"]
    for label, recipe, nodes, gpus, overrides in CONFIGS:
        plan = make_plan(Path(recipe), Cluster(nodes=nodes, gpus_per_node=gpus), overrides=overrides)
        mem, secs, hours = BEFORE[label]
        lines.append(f"| {label} | {plan.memory_per_gpu:.1f} ({mem}) | {plan.model_states_gib:.1f} | "
                     f"{plan.memory_model.peak_phase} | {plan.step_seconds['total']:.0f} ({secs}) | "
                     f"{plan.generation_waves} | {plan.gpu_hours:,.0f} ({hours}) | {sum(plan.disk_gb.values()):,.0f} |")
    lines += ["", "What changed (empo/launch/memory.py gives every term's source): model states as DeepSpeed's own "
              "estimators count them (they were 9-12% low), FSDP2 at 16 bytes per parameter, TRL's chunked log-prob "
              "head instead of full [tokens x vocab] logits (the largest overestimate before), the ZeRO-3 step peak "
              "and reduce bucket, the LoRA gather before each weight sync under ZeRO-3, peaks by phase instead of a "
              "sum; activations counted from the tensors a SwiGLU block saves for backward (checked against measured "
              "steps on CPU in plan_memory_cpu/); generation waves when a vLLM instance's KV cache holds fewer "
              "sequences than its rollout; answer clustering time; the disk a run writes."]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
