"""NLI cross-encoder judge: P(entailment) of (premise = question + answer a, hypothesis = question + answer b).

Any sequence-classification checkpoint with an entailment label works (local directory or hub id): the label
is found in the model config's ``id2label`` (a label whose name contains "entail", case-insensitive), never
assumed to be at a fixed index.  The score is the softmax probability of that label over all labels, so a
3-way MNLI model's "neutral" and "contradiction" both count against entailment.  As in Kuhn et al. (semantic
entropy), both sides carry the question, so "Paris" is read as an answer to *this* question.
"""

from __future__ import annotations

from empo.clustering.judges.base import Judge, resolve_device
from empo.errors import ConfigError


def entailment_index(id2label: dict) -> int:
    """Index of the entailment label in ``id2label``; an error naming the labels when there is none or several."""
    hits = [int(i) for i, name in id2label.items() if "entail" in str(name).lower()
            and "not" not in str(name).lower() and "non" not in str(name).lower()]
    if len(hits) != 1:
        raise ConfigError(f"NLI judge: the model's id2label {dict(id2label)} must name exactly one entailment label "
                         "(a label containing 'entail'); pass a sequence-classification model trained for NLI")
    return hits[0]


class NLIJudge(Judge):
    name = "nli"

    def __init__(self, model: str, threshold: float = 0.5, batch_size: int = 32, device: str = "cpu",
                 with_question: bool = True, max_length: int = 256):
        super().__init__(threshold=threshold, batch_size=batch_size, device=device)
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.device = resolve_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.model = AutoModelForSequenceClassification.from_pretrained(model, dtype=torch.float32)
        self.model.to(self.device).eval()
        self.entail_id = entailment_index(self.model.config.id2label)
        self.with_question = with_question
        self.max_length = max_length

    def _side(self, question: str, answer: str) -> str:
        return f"{question} {answer}" if self.with_question else answer

    def _score(self, question, pairs):
        import torch

        enc = self.tokenizer([self._side(question, a) for a, _ in pairs], [self._side(question, b) for _, b in pairs],
                             padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        with torch.no_grad():
            logits = self.model(**enc.to(self.device)).logits.float()
        return torch.softmax(logits, dim=-1)[:, self.entail_id].cpu().tolist()
