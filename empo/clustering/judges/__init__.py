"""Meaning judges for free-form answers, behind one interface (:class:`empo.clustering.judges.base.Judge`).

- ``nli``: an NLI cross-encoder (any sequence-classification model with an entailment label);
- ``verifier``: a causal LM asked whether two answers mean the same (P(yes) vs P(no), no sampling), on transformers
  or (``engine="vllm"``) on vLLM's offline engine;
- ``embedding``: cosine similarity of mean-pooled sentence embeddings (all-MiniLM-L6-v2 by default).

``build_judge(kind, model, ...)`` builds one; models load lazily (only when a judge is built).
"""

from __future__ import annotations

from empo.clustering.judges.base import Judge
from empo.errors import ConfigError

JUDGE_KINDS = ("nli", "verifier", "embedding")
DEFAULT_JUDGE_MODEL = {"verifier": "smollm2-135m-instruct", "embedding": "all-minilm-l6-v2", "nli": None}
#: Any other model's default threshold: P(yes) or P(entailment) 0.5, cosine 0.8.
DEFAULT_THRESHOLD = {"verifier": 0.5, "embedding": 0.8, "nli": 0.5}
#: The default models' thresholds as calibrated for the free-form clustering rule (answering parts, guards) on the
#: calibration split of tests/data/answer_pairs.jsonl (the lowest reaching precision 0.9 there, rounded down):
#: ``python scripts/bench_judges.py``, eval/results/benchmarks/judges_cpu.json. A model of one's own: calibrate it.
CALIBRATED_THRESHOLD = {("verifier", "smollm2-135m-instruct"): 0.547, ("embedding", "all-minilm-l6-v2"): 0.666}


def build_judge(kind: str, model: str | None = None, *, threshold: float | None = None, device: str = "cpu",
                batch_size: int | None = None, **options) -> Judge:
    if kind not in JUDGE_KINDS:
        raise ConfigError(f"unknown judge '{kind}'; known: {list(JUDGE_KINDS)}")
    model = model or DEFAULT_JUDGE_MODEL[kind]
    if model is None:
        raise ConfigError(f"judge '{kind}' needs a model (a local directory or hub id of a sequence-classification "
                         "model with an entailment label)")
    if threshold is None:
        threshold = CALIBRATED_THRESHOLD.get((kind, model), DEFAULT_THRESHOLD[kind])
    kwargs = dict(options, device=device, threshold=threshold)
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    if kind == "nli":
        from empo.clustering.judges.nli import NLIJudge
        return NLIJudge(model, **kwargs)
    if kind == "verifier":
        from empo.clustering.judges.verifier import VerifierJudge, VLLMVerifierJudge

        if kwargs.pop("engine", "hf") == "vllm":
            return VLLMVerifierJudge(model, **kwargs)
        return VerifierJudge(model, **kwargs)
    from empo.clustering.judges.embedding import EmbeddingJudge
    return EmbeddingJudge(model, **kwargs)


__all__ = ["Judge", "build_judge", "JUDGE_KINDS", "DEFAULT_JUDGE_MODEL", "DEFAULT_THRESHOLD", "CALIBRATED_THRESHOLD"]
