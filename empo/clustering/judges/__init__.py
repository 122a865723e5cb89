"""Meaning judges for free-form answers, behind one interface (:class:`empo.clustering.judges.base.Judge`).

- ``nli``: an NLI cross-encoder (any sequence-classification model with an entailment label);
- ``verifier``: a causal LM asked whether two answers mean the same (P(yes) vs P(no), no sampling);
- ``embedding``: cosine similarity of mean-pooled sentence embeddings (all-MiniLM-L6-v2 by default).

``build_judge(kind, model, ...)`` builds one; models load lazily (only when a judge is built).
"""

from __future__ import annotations

from empo.clustering.judges.base import Judge
from empo.errors import ConfigError

JUDGE_KINDS = ("nli", "verifier", "embedding")
DEFAULT_JUDGE_MODEL = {"verifier": "smollm2-135m-instruct", "embedding": "all-minilm-l6-v2", "nli": None}
DEFAULT_THRESHOLD = {"verifier": 0.5, "embedding": 0.8, "nli": 0.5}


def build_judge(kind: str, model: str | None = None, *, threshold: float | None = None, device: str = "cpu",
                batch_size: int | None = None, **options) -> Judge:
    if kind not in JUDGE_KINDS:
        raise ConfigError(f"unknown judge '{kind}'; known: {list(JUDGE_KINDS)}")
    model = model or DEFAULT_JUDGE_MODEL[kind]
    if model is None:
        raise ConfigError(f"judge '{kind}' needs a model (a local directory or hub id of a sequence-classification "
                         "model with an entailment label)")
    kwargs = dict(options, device=device, threshold=DEFAULT_THRESHOLD[kind] if threshold is None else threshold)
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    if kind == "nli":
        from empo.clustering.judges.nli import NLIJudge
        return NLIJudge(model, **kwargs)
    if kind == "verifier":
        from empo.clustering.judges.verifier import VerifierJudge
        return VerifierJudge(model, **kwargs)
    from empo.clustering.judges.embedding import EmbeddingJudge
    return EmbeddingJudge(model, **kwargs)


__all__ = ["Judge", "build_judge", "JUDGE_KINDS", "DEFAULT_JUDGE_MODEL", "DEFAULT_THRESHOLD"]
