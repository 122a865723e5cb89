"""Free-form answers: extraction with guards, and clustering by bidirectional entailment.

Answer extraction (:func:`extract_freeform`)
--------------------------------------------
The answer of a completion is its last ``\\boxed{...}`` when it has one, else the text after its last
"answer:" marker when it has one, else the whole completion (stripped).  Guards, all configurable
(:class:`FreeformGuards`):

* empty or missing answer -> missing (``None``): the EMPO reward gives it ``no_answer_reward``;
* an answer longer than ``max_answer_chars`` -> treated as missing;
* an answer that repeats the question (its normalised form equals, or contains, the normalised question,
  and ``reject_question_echo`` is on) -> missing, and :func:`is_question_echo` lets the reward give it no reward;
* the whole-group floor (largest cluster's share below ``min_majority_share`` -> no reward for anyone) is applied
  by the reward (:class:`empo.rewards.builtin.ClusterReward`), since it needs the clusters.

Clustering rule (:func:`cluster_texts`)
---------------------------------------
The answer, not the sentence, decides: each answer is first reduced, given its question, to its *answering part*
(:mod:`empo.clustering.answer_parts`: the words the question does not already supply, numbers written one way;
"The opposite of hot is cool." -> "cool", "A spider has 8 legs." -> "8"). Then, for two distinct parts:

1. a typed guard (:mod:`empo.clustering.guards`: different numbers, different named entities, opposite polarity,
   contrasting words) that finds them different keeps them apart -- no judge's similarity overrides it;
2. otherwise the judge sees the two parts (and the question), and they are *linked* when both directions hold:
   A => B and B => A given the question (Kuhn et al., Farquhar et al. 2024).

Answers with identical answering parts are one cluster without any judge -- the only way two answers are merged
without the judge; agreement of the guards alone never merges. A one-way pair -- a more specific answer that
entails a vaguer one, "in Paris, France" => "in Europe" but not back -- is **not** linked.  The clusters are the
**connected components** of the links (the same closure as math clustering, :mod:`empo.clustering.math_clusters`):
the partition does not depend on the order of the answers.  Consequence, documented and tested: A and C share a
cluster when A<=>B and B<=>C even if the judge says A and C differ; two answers with only one-way entailment
between them land in different clusters unless such a chain of two-way links joins them.

Cost, cheapest first: answers with equal normalised strings (case, whitespace, punctuation and a leading
article ignored) are one atom; atoms with equal answering parts are one node; guards are string checks; judging
runs between node parts only (each node's answer text, for the entity guard, the shortest, ties alphabetical, so
the choice is order-independent); every directed pair is judged at most once (cache across the group and across
calls, keyed by question and parts); all pending forward-direction pairs of a group go to the judge in one call
(batched forward passes), then the reverse direction only for the pairs whose forward direction held.  A symmetric
judge (embedding cosine) is asked once per unordered pair.
"""

from __future__ import annotations

import re
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from empo.clustering.judges.base import Judge
from empo.errors import ConfigError
from empo.grading.union_find import UnionFind

_ARTICLE = re.compile(r"^(the|a|an)\s+")
_ANSWER_MARK = re.compile(r"(?:final answer|answer)\s*(?:is)?\s*[:：]\s*", re.IGNORECASE)


def normalise_text(text: str) -> str:
    """Casefolded, punctuation removed, whitespace collapsed, a leading article dropped."""
    t = unicodedata.normalize("NFKC", text).casefold()
    t = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in t)
    t = " ".join(t.split())
    return _ARTICLE.sub("", t)


@dataclass(frozen=True)
class FreeformGuards:
    max_answer_chars: int | None = 300
    reject_question_echo: bool = True

    def __post_init__(self):
        if self.max_answer_chars is not None and self.max_answer_chars < 1:
            raise ConfigError(f"max_answer_chars must be >= 1 or None, got {self.max_answer_chars}")


def is_question_echo(question: str | None, answer: str) -> bool:
    """The answer repeats the question: its normalised form is, or contains, the normalised question."""
    if not question:
        return False
    q, a = normalise_text(question), normalise_text(answer)
    return bool(q) and q in a


def extract_freeform(text: str | None, question: str | None = None,
                     guards: FreeformGuards = FreeformGuards()) -> str | None:
    """The free-form answer of a completion, or ``None`` when missing, too long or an echo of the question."""
    if not text:
        return None
    answer = _answer_span(text).strip()
    if not answer or not normalise_text(answer):
        return None
    if guards.max_answer_chars is not None and len(answer) > guards.max_answer_chars:
        return None
    if guards.reject_question_echo and is_question_echo(question, answer):
        return None
    return answer


def _answer_span(text: str) -> str:
    from empo.grading.extract import extract_answer

    boxed = extract_answer(text)
    if boxed is not None:
        return boxed
    marks = list(_ANSWER_MARK.finditer(text))
    if marks:
        return text[marks[-1].end():]
    return text


class PairCache:
    """Directed pair scores keyed by (question, a, b), least recently used dropped past ``max_size``."""

    def __init__(self, max_size: int = 200_000):
        self.max_size = max_size
        self._d: OrderedDict[tuple[str, str, str], float] = OrderedDict()

    def get(self, key):
        v = self._d.get(key)
        if v is not None:
            self._d.move_to_end(key)
        return v

    def put(self, key, value: float) -> None:
        self._d[key] = value
        self._d.move_to_end(key)
        while len(self._d) > self.max_size:
            self._d.popitem(last=False)

    def __len__(self) -> int:
        return len(self._d)


def _score_pairs(judge: Judge, question: str, pairs: list[tuple[str, str]], cache: PairCache) -> list[float]:
    """Scores of directed pairs, judging only the ones not cached (one judge call for all of them)."""
    keys = [(question, a, b) for a, b in pairs]
    scores = [cache.get(k) for k in keys]
    todo = list(dict.fromkeys(k for k, s in zip(keys, scores) if s is None))
    if todo:
        for k, s in zip(todo, judge.entails(question, [(a, b) for _, a, b in todo])):
            cache.put(k, s)
            if judge.symmetric:
                cache.put((k[0], k[2], k[1]), s)
        scores = [cache.get(k) for k in keys]
    return scores


def cluster_texts(question: str, answers: Sequence[str | None], judge: Judge, *,
                  cache: PairCache | None = None) -> list[int]:
    """Cluster id per answer (numbered by first appearance); ``None`` answers are singletons."""
    from empo.clustering.answer_parts import answering_part, same_part
    from empo.clustering.guards import different

    cache = cache if cache is not None else PairCache()
    norm = [normalise_text(a) if isinstance(a, str) else "" for a in answers]
    reps: dict[str, str] = {}  # normalised answer -> its shortest text (ties alphabetical): order-independent
    for a, n in zip(answers, norm):
        if n and (n not in reps or (len(a), a) < (len(reps[n]), reps[n])):
            reps[n] = a
    part_of = {n: answering_part(question, text) for n, text in reps.items()}
    # one node per distinct answering part (equal parts are one cluster without a judge), its text the shortest
    part_text: dict[str, str] = {}
    for n, part in part_of.items():
        if part not in part_text or (len(reps[n]), reps[n]) < (len(part_text[part]), part_text[part]):
            part_text[part] = reps[n]
    order = sorted(part_text, key=lambda p: (len(p), p))  # evaluation order independent of answer order
    index = {p: i for i, p in enumerate(order)}
    uf = UnionFind(len(order))
    pairs = []
    for i in range(len(order)):
        for j in range(i + 1, len(order)):
            if different(order[i], order[j], part_text[order[i]], part_text[order[j]], question):
                continue  # a guard's "different" stands: no similarity overrides it
            if same_part(order[i], order[j]):  # "100" / "100 degrees": one answer, no judge
                uf.union(i, j)
            else:
                pairs.append((i, j))
    if pairs:
        forward = _score_pairs(judge, question, [(order[i], order[j]) for i, j in pairs], cache)
        passed = [p for p, s in zip(pairs, forward) if judge.decide(s)]
        if judge.symmetric:
            linked = passed
        else:
            backward = _score_pairs(judge, question, [(order[j], order[i]) for i, j in passed], cache)
            linked = [p for p, s in zip(passed, backward) if judge.decide(s)]
        for i, j in linked:
            uf.union(i, j)

    ids: list[int] = []
    seen: dict[int, int] = {}
    nxt = 0
    for n in norm:
        if not n:
            ids.append(nxt)
            nxt += 1
            continue
        root = uf.find(index[part_of[n]])
        if root not in seen:
            seen[root] = nxt
            nxt += 1
        ids.append(seen[root])
    return ids


class FreeformClusterer:
    """The free-form setting: :func:`extract_freeform` answers clustered by :func:`cluster_texts` with a judge.

    ``kind='entailment'`` uses the ``judge`` named ('verifier' or 'nli'); ``kind='embedding'`` the embedding
    judge.  The judge is built on first use (a recipe is validated before any model loads); one pair cache
    serves every group of the run.
    """

    def __init__(self, kind: str = "entailment", *, judge: str = "verifier", judge_model: str | None = None,
                 threshold: float | None = None, device: str = "cpu", batch_size: int | None = None,
                 template: str | None = None, engine: str = "hf", gpu_memory_utilization: float = 0.1,
                 max_answer_chars: int | None = 300, reject_question_echo: bool = True,
                 judge_obj: Judge | None = None):
        from empo.clustering.judges import JUDGE_KINDS

        if kind not in ("entailment", "embedding"):
            raise ConfigError(f"free-form clustering is 'entailment' or 'embedding', got '{kind}'")
        self.judge_kind = "embedding" if kind == "embedding" else judge
        if self.judge_kind not in JUDGE_KINDS or (kind == "entailment" and judge == "embedding"):
            raise ConfigError(f"entailment_judge must be 'verifier' or 'nli', got '{judge}'")
        self.kind = kind
        self.guards = FreeformGuards(max_answer_chars=max_answer_chars, reject_question_echo=reject_question_echo)
        if template is not None and self.judge_kind != "verifier":
            raise ConfigError(f"judge_template is the verifier's prompt; the '{self.judge_kind}' judge has none")
        self._judge_options = dict(model=judge_model, threshold=threshold, device=device, batch_size=batch_size)
        if template is not None:
            self._judge_options["template"] = template
        if engine != "hf":
            if self.judge_kind != "verifier":
                raise ConfigError(f"judge_engine '{engine}' runs the verifier judge, not '{self.judge_kind}'")
            self._judge_options.update(engine=engine, gpu_memory_utilization=gpu_memory_utilization)
        self._judge = judge_obj
        self.cache = PairCache()

    @property
    def judge(self) -> Judge:
        if self._judge is None:
            from empo.clustering.judges import build_judge

            self._judge = build_judge(self.judge_kind, **self._judge_options)
        return self._judge

    @property
    def pairs_judged(self) -> int:
        """Directed pairs the judge has scored (0 before it is built): what the trainer logs per step."""
        return self._judge.pairs_scored if self._judge is not None else 0

    def extract(self, text: str, question: str | None = None) -> str | None:
        return extract_freeform(text, question, self.guards)

    def cluster(self, answers: Sequence[str | None], question: str | None = None) -> list[int]:
        return cluster_texts(question or "", answers, self.judge, cache=self.cache)

    def equivalent(self, a: str, b: str, question: str | None = None) -> bool:
        """Same meaning by the same rule (for logging against a reference answer)."""
        if normalise_text(a) == normalise_text(b):
            return True
        return cluster_texts(question or "", [a, b], self.judge, cache=self.cache)[1] == 0
