"""Causal-LM verifier judge: asks a chat model whether answer A means the same as answer B for the question.

The score is P(yes) / (P(yes) + P(no)) read from the logits of the *next token* after the chat template's
generation prompt -- one forward pass per pair, no sampling, no generation.  "yes" and "no" are each the
log-sum-exp over the first tokens of their spellings ("Yes", " yes", ...), so the reading does not depend on
which capitalisation or leading space the tokenizer prefers.

Works with any causal LM: the embedded default model (``smollm2-135m-instruct``), a separate verifier, or the policy
itself (pass ``model=`` and ``tokenizer=`` objects).  The question asked is symmetric in intent, but small LMs are
biased by position, so clustering asks both orders (A, B) and (B, A) and needs "yes" to both (the bidirectional
rule); ``template`` can instead ask one-way entailment.  The chat templates (``same_meaning``, ``entailment``, or a
format string of one's own) go through the tokenizer's chat template; ``general_verifier`` is the raw prompt that
TIGER-Lab/general-verifier was trained on and the official EMPO code asks it (``src/open_r1/semantic_uncertainty.py``:
ground truth = A, student answer = B, the next token after "Final Decision: " read as Yes or No), for a model
without a chat template.
"""

from __future__ import annotations

from empo.clustering.judges.base import Judge, resolve_device
from empo.errors import ConfigError

SAME_MEANING_TEMPLATE = (
    "Question: {question}\n"
    "Answer A: {a}\n"
    "Answer B: {b}\n"
    "Do answer A and answer B give the same answer to the question? Reply with Yes or No."
)
ENTAILMENT_TEMPLATE = (
    "Question: {question}\n"
    "Answer A: {a}\n"
    "Answer B: {b}\n"
    "If answer A is correct, must answer B also be correct? Reply with Yes or No."
)
GENERAL_VERIFIER_PROMPT = (
    "User: ### Question: {question}\n\n"
    "### Ground Truth Answer: {a}\n\n"
    "### Student Answer: {b}\n\n"
    "For the above question, please verify if the student's answer is equivalent to the ground truth answer.\n"
    "Do not solve the question by yourself; just check if the student's answer is equivalent to the ground truth "
    "answer.\n"
    "If correct, output \"Final Decision: Yes\". If incorrect, output \"Final Decision: No\".\n"
    "Assistant: Final Decision: "
)
#: name -> (format string with {question}, {a}, {b}; whether it goes through the tokenizer's chat template)
TEMPLATES = {"same_meaning": (SAME_MEANING_TEMPLATE, True), "entailment": (ENTAILMENT_TEMPLATE, True),
             "general_verifier": (GENERAL_VERIFIER_PROMPT, False)}

_YES = ("Yes", " Yes", "yes", " yes", "YES")
_NO = ("No", " No", "no", " no", "NO")


def _first_token_ids(tokenizer, spellings) -> list[int]:
    ids = []
    for s in spellings:
        toks = tokenizer(s, add_special_tokens=False)["input_ids"]
        if toks and toks[0] not in ids:
            ids.append(toks[0])
    return ids


class VerifierJudge(Judge):
    name = "verifier"

    def __init__(self, model="smollm2-135m-instruct", tokenizer=None, threshold: float = 0.5, batch_size: int = 16,
                 device: str = "cpu", template: str = "same_meaning"):
        super().__init__(threshold=threshold, batch_size=batch_size, device=device)
        from empo.model import load_model, load_tokenizer

        self.device = resolve_device(device)
        if isinstance(model, str):
            tokenizer = tokenizer or load_tokenizer(model, padding_side="left")
            model = load_model(model).to(self.device)
        elif tokenizer is None:
            raise ValueError("judge 'verifier': pass tokenizer= with a model object")
        else:  # a model object (e.g. the policy) stays where it is; inputs go to its device
            self.device = next(model.parameters()).device
        self.model, self.tokenizer = model, tokenizer
        self.template, self.chat = TEMPLATES.get(template, (template, True))
        for key in ("{question}", "{a}", "{b}"):
            if key not in self.template:
                raise ConfigError(f"judge 'verifier': template must be one of {sorted(TEMPLATES)} or a format string "
                                 f"with {{question}}, {{a}} and {{b}}; '{template}' lacks {key}")
        if self.chat and not getattr(tokenizer, "chat_template", None):
            raise ConfigError(f"judge 'verifier': the tokenizer has no chat template for the '{template}' template; "
                              "use "
                             "judge_template: general_verifier (a raw prompt) or a model with one")
        self.yes_ids = _first_token_ids(tokenizer, _YES)
        self.no_ids = _first_token_ids(tokenizer, _NO)
        if set(self.yes_ids) & set(self.no_ids):
            raise ConfigError("judge 'verifier': the tokenizer maps 'yes' and 'no' to a shared first token")

    def prompt(self, question: str, a: str, b: str) -> str:
        text = self.template.format(question=question, a=a, b=b)
        if not self.chat:
            return text
        messages = [{"role": "user", "content": text}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _score(self, question, pairs):
        import torch

        texts = [self.prompt(question, a, b) for a, b in pairs]
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"  # the last position is every row's next token
        try:
            enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            self.tokenizer.padding_side = side
        enc = enc.to(self.device)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                logits = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits[:, -1]
        finally:
            self.model.train(was_training)
        logp = torch.log_softmax(logits.float(), dim=-1)
        yes = torch.logsumexp(logp[:, self.yes_ids], dim=-1)
        no = torch.logsumexp(logp[:, self.no_ids], dim=-1)
        return torch.sigmoid(yes - no).cpu().tolist()  # P(yes) / (P(yes) + P(no))
