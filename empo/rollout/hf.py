"""Sampling with transformers' ``generate``: the questions' chat prompts, G completions per question, seeded per
question so a fixed seed reproduces the rows. The vLLM backend (:mod:`empo.rollout.vllm_engine`) has the same
``generate_groups`` interface."""

from __future__ import annotations

from dataclasses import dataclass, field

from empo.errors import ConfigError


@dataclass
class SamplingConfig:
    """How completions are sampled."""

    num_generations: int = field(default=8, metadata={"help": "G: completions per question."})
    temperature: float = field(default=0.8, metadata={"help": "Sampling temperature; 0 means greedy (G must be 1)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass."})
    max_new_tokens: int = field(default=128, metadata={"help": "Completion length cap in tokens."})
    seed: int = field(default=0, metadata={"help": "Sampling seed (each batch is seeded from it and its first id)."})


@dataclass
class Sample:
    text: str
    num_tokens: int
    truncated: bool  # hit max_new_tokens without an end-of-turn token


def chat_prompt(tokenizer, messages: list[dict]) -> str:
    """The text a model is prompted with: its chat template with the assistant turn opened. Both backends (and the
    trainer, through TRL) prompt with exactly this, tokenised without extra special tokens."""
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def prompt_token_ids(tokenizer, messages: list[dict]) -> list[int]:
    return tokenizer(chat_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"]


class HFGenerator:
    """Batched sampling with transformers' ``generate`` through the chat template."""

    def __init__(self, model, tokenizer, batch_size: int = 8):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size

    def generate_groups(self, messages: list[list[dict]], sampling: SamplingConfig,
                        seed_key: str = "") -> list[list[Sample]]:
        import torch

        tok = self.tokenizer
        prompts = [chat_prompt(tok, m) for m in messages]
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        greedy = sampling.temperature == 0
        if greedy and sampling.num_generations != 1:
            raise ConfigError("greedy decoding (temperature 0) gives identical samples: use num_generations=1")
        torch.manual_seed(_seed_from(sampling.seed, seed_key))
        with torch.inference_mode():
            out = self.model.generate(
                **enc,
                do_sample=not greedy,
                temperature=sampling.temperature if not greedy else None,
                top_p=sampling.top_p if not greedy else None,
                top_k=0 if not greedy else None,
                max_new_tokens=sampling.max_new_tokens,
                num_return_sequences=sampling.num_generations,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )
        new = out[:, enc["input_ids"].shape[1]:]
        samples = []
        for row in new:
            ids = row.tolist()
            if tok.eos_token_id in ids:
                ids = ids[: ids.index(tok.eos_token_id)]
                truncated = False
            else:
                ids = [t for t in ids if t != tok.pad_token_id]
                truncated = True
            samples.append(Sample(tok.decode(ids, skip_special_tokens=True), len(ids), truncated))
        g = sampling.num_generations
        return [samples[i:i + g] for i in range(0, len(samples), g)]


def _seed_from(seed: int, key: str) -> int:
    import hashlib

    return int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:8], 16)
