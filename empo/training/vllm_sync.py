"""TRL's colocated vLLM engine, adapted to CPU (``use_vllm: true``, ``vllm_mode: colocate``): the engine in the
training model's dtype, eager on CPU, and the weight sync through vLLM's in-place ``reload_weights`` where TRL's
per-tensor ``load_weights`` cannot reach vLLM's packed CPU kernels. GPUs keep TRL's own sync."""

from __future__ import annotations

import functools
import time
from contextlib import contextmanager

from empo.rollout.vllm_engine import configure_cpu_threads, eager, on_cpu, require_vllm


@contextmanager
def _swapped(module, name: str, value):
    """Temporarily replace ``module.name``: TRL builds its vLLM objects inline, with no factory to override."""
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


def trl_generation_class(enforce_eager: bool | None = None):
    """A ``trl.generation.vllm_generation.VLLMGeneration`` subclass that runs the colocated engine on CPU.

    - the engine is built in the training model's dtype and, on CPU, eager (TRL passes neither);
    - weight sync on CPU goes through vLLM's in-place ``reload_weights``: TRL's per-tensor ``load_weights`` cannot
      work there, because vLLM's CPU linears pack their weights into oneDNN/SGL kernels at load time and drop the
      loadable ``weight`` parameter (``'Parameter' object has no attribute 'weight_loader'``). ``reload_weights``
      loads the merged checkpoint-format tensors and re-runs the packing for every layer, the tied output layer of
      SmolLM2 included, whose packed copy is made from the embedding. ``tests/test_vllm.py`` checks the result token
      for token against the HF policy after a training step. GPUs keep TRL's sync.
    - each sync's wall time is kept in ``sync_seconds`` for the trainer to log.
    """
    from trl.generation import vllm_generation as trl_vllm

    class EmpoVLLMGeneration(trl_vllm.VLLMGeneration):
        sync_seconds: list[float]

        def _init_vllm(self):
            self.sync_seconds = []
            extra = {"dtype": str(self.model.dtype).removeprefix("torch."), "enforce_eager": eager(enforce_eager)}
            if on_cpu():
                import torch

                configure_cpu_threads(torch.get_num_threads())
            with _swapped(trl_vllm, "LLM", functools.partial(trl_vllm.LLM, **extra)):
                super()._init_vllm()

        def sync_weights(self):
            t0 = time.perf_counter()
            if self.mode == "colocate" and on_cpu():
                runner = self.llm.llm_engine.model_executor.driver_worker.model_runner
                runner.reload_weights(weights_iterator=self._iter_named_params(), is_checkpoint_format=True)
                self.llm.reset_prefix_cache()
            else:
                super().sync_weights()
            self.sync_seconds.append(time.perf_counter() - t0)

    return EmpoVLLMGeneration


@contextmanager
def empo_vllm_generation(enforce_eager: bool | None = None):
    """While building a GRPOTrainer, make it use ``trl_generation_class`` for ``use_vllm``."""
    from trl.trainer import grpo_trainer

    require_vllm()
    with _swapped(grpo_trainer, "VLLMGeneration", trl_generation_class(enforce_eager)):
        yield
