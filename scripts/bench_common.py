"""What the training benchmarks share: the CPU recipe's LoRA and a per-step wall-clock timer."""

from __future__ import annotations

import time
from pathlib import Path

CPU_RECIPE = Path(__file__).resolve().parents[1] / "recipes/SmolLM2-135M-Instruct/empo/config_arith_cpu.yaml"


def recipe_lora():
    """The LoRA of the CPU recipe, so that benchmarks train what ``empo train`` trains."""
    import yaml
    from peft import LoraConfig

    r = yaml.safe_load(CPU_RECIPE.read_text())
    return LoraConfig(r=r["lora_r"], lora_alpha=r["lora_alpha"], lora_dropout=r["lora_dropout"],
                      target_modules=r["lora_target_modules"], task_type="CAUSAL_LM")


def step_timer(step_times: list[float]):
    """A TrainerCallback appending each optimizer step's wall time (seconds) to ``step_times``."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *args, **kwargs):
            self.t = time.perf_counter()

        def on_step_end(self, *args, **kwargs):
            step_times.append(time.perf_counter() - self.t)

    return StepTimer()
