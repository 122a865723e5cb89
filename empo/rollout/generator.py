"""The one place that builds a rollout engine: ``empo rollout``, ``empo eval`` and ``empo compare`` sample with it."""

from __future__ import annotations

BACKENDS = ["hf", "vllm"]


def make_generator(backend: str, model: str, adapter: str | None, dtype: str, threads: int, seed: int = 0):
    """An engine with ``generate_groups``: transformers' ``generate`` (``hf``) or vLLM's offline engine (``vllm``),
    for ``model`` with an optional LoRA ``adapter``."""
    from empo.model import load_model, load_tokenizer

    tokenizer = load_tokenizer(model)
    if backend == "vllm":
        from empo.rollout.vllm_engine import VLLMGenerator

        return VLLMGenerator(model, tokenizer, adapter=adapter, dtype=dtype, num_threads=threads, seed=seed)
    from empo.rollout.hf import HFGenerator

    return HFGenerator(load_model(model, dtype=dtype, adapter=adapter), tokenizer)
