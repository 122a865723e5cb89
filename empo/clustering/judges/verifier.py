"""Causal-LM verifier judge: asks a chat model whether answer A means the same as answer B for the question.

The score is P(yes) / (P(yes) + P(no)) read from the logits of the *next token* after the chat template's
generation prompt -- one forward pass per pair, no sampling, no generation.  "yes" and "no" are each the
log-sum-exp over the first tokens of their spellings ("Yes", " yes", ...), so the reading does not depend on
which capitalisation or leading space the tokenizer prefers.

:class:`VLLMVerifierJudge` asks the same prompts on vLLM's offline engine (``judge_engine: vllm``), a group's pending
pairs in one call.

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
        self.template, self.chat = TEMPLATES.get(template, (template, True))
        for key in ("{question}", "{a}", "{b}"):
            if key not in self.template:
                raise ConfigError(f"judge 'verifier': template must be one of {sorted(TEMPLATES)} or a format string "
                                 f"with {{question}}, {{a}} and {{b}}; '{template}' lacks {key}")
        self.tokenizer = tokenizer = self._load(model, tokenizer, device)
        if self.chat and not getattr(tokenizer, "chat_template", None):
            raise ConfigError(f"judge 'verifier': the tokenizer has no chat template for the '{template}' template; "
                              "use "
                             "judge_template: general_verifier (a raw prompt) or a model with one")
        self.yes_ids = _first_token_ids(tokenizer, _YES)
        self.no_ids = _first_token_ids(tokenizer, _NO)
        if set(self.yes_ids) & set(self.no_ids):
            raise ConfigError("judge 'verifier': the tokenizer maps 'yes' and 'no' to a shared first token")

    def _load(self, model, tokenizer, device: str):
        """Load the model (a name) or take it (an object); return the tokenizer."""
        from empo.model import load_model, load_tokenizer

        self.device = resolve_device(device)
        if isinstance(model, str):
            tokenizer = tokenizer or load_tokenizer(model, padding_side="left")
            model = load_model(model).to(self.device)
        elif tokenizer is None:
            raise ValueError("judge 'verifier': pass tokenizer= with a model object")
        else:  # a model object (e.g. the policy) stays where it is; inputs go to its device
            self.device = next(model.parameters()).device
        self.model = model
        return tokenizer

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
                # the next token's logits only: [batch, vocab], not [batch, tokens, vocab]
                logits = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                    logits_to_keep=1).logits[:, -1]
        finally:
            self.model.train(was_training)
        logp = torch.log_softmax(logits.float(), dim=-1)
        yes = torch.logsumexp(logp[:, self.yes_ids], dim=-1)
        no = torch.logsumexp(logp[:, self.no_ids], dim=-1)
        return torch.sigmoid(yes - no).cpu().tolist()  # P(yes) / (P(yes) + P(no))


class VLLMVerifierJudge(VerifierJudge):
    """The verifier on vLLM's offline engine: the same prompts and the same reading of P(yes) / (P(yes) + P(no)),
    every pair of one ``entails`` call (clustering: a group's pending pairs) in one ``generate`` call.

    One output token per pair, restricted to the yes/no tokens (``allowed_token_ids``), and its log-probs read after
    that restriction (``logprobs_mode="processed_logprobs"``): renormalised over yes and no, which leaves the ratio
    P(yes) / P(no) -- the score -- exactly as the full distribution has it. The engine takes
    ``gpu_memory_utilization`` of ``device``'s memory, in the process that builds the judge (CPU: vLLM's CPU build
    and RAM; fp32 there, bf16 on a GPU). Under ``accelerate launch`` each training process runs its own engine on its
    own GPU the way TRL's colocate mode does (``distributed_executor_backend="external_launcher"``), so it cannot
    share a process with TRL's colocated engine (the recipe check refuses that). vLLM places its engine itself: on
    the first visible GPU in one process, on the process's own under ``accelerate launch`` -- so ``device`` is
    ``cuda`` or ``auto`` (``cuda:0`` in one process); another GPU is chosen with ``CUDA_VISIBLE_DEVICES``."""

    def __init__(self, model="smollm2-135m-instruct", threshold: float = 0.5, batch_size: int = 1 << 16,
                 device: str = "auto", template: str = "same_meaning", gpu_memory_utilization: float = 0.1,
                 max_model_len: int = 2048, seed: int = 0):
        if not isinstance(model, str):
            raise ConfigError("judge 'verifier' on vLLM: pass a model name or directory (vLLM loads it itself)")
        self._engine = dict(gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len, seed=seed)
        super().__init__(model, None, threshold=threshold, batch_size=batch_size, device=device, template=template)

    def _load(self, model, tokenizer, device: str):
        from empo.distributed import world
        from empo.model import load_tokenizer, resolve_model_path
        from empo.rollout.vllm_engine import configure_cpu_engine, engine_kwargs, on_cpu, require_vllm

        require_vllm()
        from vllm import LLM

        cpu = on_cpu()
        processes = world()[1]
        self.device = "cpu" if cpu else resolve_device(device)
        if not cpu and not str(self.device).startswith("cuda"):
            raise ConfigError(f"judge 'verifier' on vLLM: judge_device '{device}' is not a GPU, and this vLLM is "
                              "the CUDA build (use judge_engine: hf for a CPU judge)")
        placed_by_vllm = {"cuda", "cuda:0"} if processes == 1 else {"cuda"}
        if not cpu and self.device not in placed_by_vllm:
            raise ConfigError(f"judge 'verifier' on vLLM: judge_device '{device}' -- vLLM places its engine on "
                              + ("the first visible GPU: choose another with CUDA_VISIBLE_DEVICES" if processes == 1
                                 else "each training process's own GPU") + ", and judge_device: cuda")
        path = resolve_model_path(model)
        kwargs = {**engine_kwargs("float32" if cpu else "bfloat16", self._engine["seed"]),
                  "gpu_memory_utilization": self._engine["gpu_memory_utilization"],
                  "max_model_len": self._engine["max_model_len"], "logprobs_mode": "processed_logprobs"}
        if cpu:
            import torch

            configure_cpu_engine(torch.get_num_threads())
        elif processes > 1:
            kwargs["distributed_executor_backend"] = "external_launcher"  # this process's GPU, as TRL colocates
        self.llm = LLM(model=path, tokenizer=path, **kwargs)
        self.model = None
        return load_tokenizer(model, padding_side="left")

    def _score(self, question, pairs):
        import math

        from vllm import SamplingParams, TokensPrompt

        ids = self.yes_ids + self.no_ids
        prompts = [TokensPrompt(prompt_token_ids=self.tokenizer(self.prompt(question, a, b),
                                                                add_special_tokens=False)["input_ids"])
                   for a, b in pairs]
        params = SamplingParams(max_tokens=1, temperature=1.0, allowed_token_ids=ids, logprobs=len(ids),
                                seed=self._engine["seed"])

        def lse(logprobs, token_ids):
            values = [logprobs[t].logprob for t in token_ids if t in logprobs]
            top = max(values, default=-math.inf)
            return top + math.log(sum(math.exp(v - top) for v in values)) if values else -math.inf

        scores = []
        for out in self.llm.generate(prompts, params, use_tqdm=False):
            logprobs = out.outputs[0].logprobs[0]  # token id -> Logprob, the allowed tokens only
            yes, no = lse(logprobs, self.yes_ids), lse(logprobs, self.no_ids)
            scores.append(0.5 if yes == no == -math.inf else 1.0 / (1.0 + math.exp(min(no - yes, 700.0))))
        return scores
