"""Free-form answers: extraction guards, bidirectional-entailment clustering, the recipe hook and the rewards.

Clustering is tested with a scripted judge (a table of directed entailments) so the rule, the cost rules
(fast path, at most one judgement per direction, batching, cache) and order invariance are checked exactly;
the real judges are tested in test_judges.py.
"""

import itertools
from types import SimpleNamespace

import pytest

from empo.clustering.freeform import (
    FreeformClusterer,
    FreeformGuards,
    PairCache,
    cluster_texts,
    extract_freeform,
    normalise_text,
)
from empo.clustering.groups import analyse_group
from empo.clustering.judges.base import Judge
from empo.clustering.math_clusters import CLUSTERINGS, MathClusterer, build_clusterer
from empo.configs import EmpoArguments
from empo.errors import ConfigError
from empo.rewards import build_reward


class ScriptedJudge(Judge):
    """a => b when (a, b) is in ``entails`` (directed), or a == b; records every call."""

    name = "scripted"

    def __init__(self, entails=(), symmetric=False, batch_size=1000):
        self.symmetric = symmetric
        super().__init__(threshold=0.5, batch_size=batch_size)
        self.table = set(entails)
        if symmetric:
            self.table |= {(b, a) for a, b in entails}
        self.calls: list[list[tuple[str, str]]] = []
        self.questions: list[tuple[str, int]] = []

    def _score(self, question, pairs):
        return [1.0 if a == b or (a, b) in self.table else 0.0 for a, b in pairs]

    def entails(self, question, pairs):
        self.calls.append(list(pairs))
        self.questions.append((question, len(self.calls)))
        return super().entails(question, pairs)

    @property
    def judged(self):
        return [p for call in self.calls for p in call]


def both(a, b):
    return [(a, b), (b, a)]


def partition(ids):
    groups = {}
    for i, c in enumerate(ids):
        groups.setdefault(c, set()).add(i)
    return sorted(map(sorted, groups.values()))


# --- normalisation and the fast path --------------------------------------------------------------------------
def test_normalise_text_ignores_case_whitespace_punctuation_and_a_leading_article():
    assert normalise_text("  The  Pacific Ocean. ") == normalise_text("pacific ocean") == "pacific ocean"
    assert normalise_text("Yes!") == normalise_text("yes") == "yes"
    assert normalise_text("Paris") != normalise_text("Lyon")
    assert normalise_text("...") == ""


def test_fast_path_joins_equal_normalised_strings_without_the_judge():
    judge = ScriptedJudge()
    ids = cluster_texts("q?", ["Paris", "paris.", " PARIS ", "Lyon", "lyon!"], judge)
    assert partition(ids) == [[0, 1, 2], [3, 4]]
    assert judge.judged == []  # equal strings need no judge; Paris and Lyon: the entity guard, no judge either
    judge = ScriptedJudge()
    ids = cluster_texts("q?", ["rain", "Rain.", " RAIN ", "snow", "snow!"], judge)
    assert partition(ids) == [[0, 1, 2], [3, 4]]
    assert judge.judged == [("rain", "snow")]  # one pair of answering parts, forward direction only (it failed)


def test_the_judge_compares_answering_parts_and_equal_parts_need_no_judge():
    judge = ScriptedJudge()
    ids = cluster_texts("How many legs does a spider have?", ["8.", "A spider has 8 legs.", "eight", "six"], judge)
    assert partition(ids) == [[0, 1, 2], [3]]
    assert judge.judged == []  # 8 = 8 = eight: one part; 8 against 6: the number guard
    judge = ScriptedJudge(both("frozen water", "solid water"))
    ids = cluster_texts("What is ice?", ["Ice is solid water.", "solid water!", "frozen water", "Ice is liquid water."],
                        judge)
    assert partition(ids) == [[0, 1, 2], [3]]
    # liquid against solid: the contrast guard, not the judge; frozen against liquid: the judge (no guard knows)
    assert sorted(judge.judged) == [("frozen water", "liquid water"), ("frozen water", "solid water"),
                                    ("solid water", "frozen water")]


# --- the bidirectional rule -------------------------------------------------------------------------------------
def test_paraphrases_merge_and_non_paraphrases_do_not():
    judge = ScriptedJudge(both("Paris", "The capital is Paris"))
    ids = cluster_texts("capital of France?", ["Paris", "The capital is Paris", "Lyon"], judge)
    assert partition(ids) == [[0, 1], [2]]


def test_one_way_entailment_makes_different_clusters():
    # the more specific answer entails the vaguer one, not back: not the same meaning
    judge = ScriptedJudge([("paris france", "europe")])  # the judge sees answering parts
    ids = cluster_texts("Where is the tower?", ["in paris, france", "in europe", "in paris, france"], judge)
    assert partition(ids) == [[0, 2], [1]]
    assert ("europe", "paris france") in judge.judged  # the reverse direction was asked, and said no


def test_chains_of_two_way_links_are_one_cluster_connected_components():
    # A<=>B and B<=>C, the judge says A and C differ: connected components put all three together
    judge = ScriptedJudge(both("alpha", "bravo") + both("bravo", "charlie"))
    assert partition(cluster_texts("q", ["alpha", "charlie", "bravo", "dingo"], judge)) == [[0, 1, 2], [3]]


def test_missing_answers_are_singletons():
    judge = ScriptedJudge()
    ids = cluster_texts("q", [None, "x", None, "x", ""], judge)
    assert partition(ids) == [[0], [1, 3], [2], [4]]
    assert ids == [0, 1, 2, 1, 3]  # numbered by first appearance


def test_partition_does_not_depend_on_answer_order():
    links = both("alpha", "alpha bravo") + both("alpha bravo", "charlie") + [("dingo", "echo")]
    answers = ["alpha", "dingo", "alpha, bravo", "echo", "the charlie", "dingo"]
    expected = None
    for perm in itertools.permutations(range(len(answers))):
        ids = cluster_texts("q", [answers[i] for i in perm], ScriptedJudge(links))
        by_text = sorted(sorted(answers[perm[i]] for i in g) for g in partition(ids))
        expected = expected or by_text
        assert by_text == expected
    assert expected == [["alpha", "alpha, bravo", "the charlie"], ["dingo", "dingo"], ["echo"]]


# --- cost: each directed pair at most once, batched, cached ----------------------------------------------------
def test_each_directed_pair_judged_at_most_once_in_two_batched_calls():
    texts = ["ant", "bear", "camel", "donkey", "eagles"]
    judge = ScriptedJudge(both("ant", "bear") + [("camel", "donkey")])
    cluster_texts("q", texts * 3, judge)
    assert len(judge.calls) == 2  # forward direction of every pair in one call, then reverse of those that held
    assert len(judge.calls[0]) == 10 and len(judge.calls[1]) == 2
    assert len(judge.judged) == len(set(judge.judged))


def test_symmetric_judge_is_asked_once_per_unordered_pair():
    judge = ScriptedJudge(both("alpha", "bravo"), symmetric=True)
    assert partition(cluster_texts("q", ["alpha", "bravo", "charlie"], judge)) == [[0, 1], [2]]
    assert len(judge.calls) == 1 and len(judge.judged) == 3


def test_cache_serves_later_groups_and_is_keyed_by_question():
    judge = ScriptedJudge(both("alpha", "bravo"))
    cache = PairCache()
    cluster_texts("q1", ["alpha", "bravo", "charlie"], judge, cache=cache)
    n = len(judge.judged)
    assert partition(cluster_texts("q1", ["charlie", "bravo", "alpha"], judge, cache=cache)) == [[0], [1, 2]]
    assert len(judge.judged) == n  # nothing judged again
    cluster_texts("q2", ["alpha", "bravo"], judge, cache=cache)
    assert len(judge.judged) > n  # another question: its own judgements


# --- extraction guards -------------------------------------------------------------------------------------------
def test_extract_freeform_answer_span():
    assert extract_freeform("The capital is Paris.") == "The capital is Paris."
    assert extract_freeform("Some thoughts.\nFinal answer: Paris") == "Paris"
    assert extract_freeform("I think \\boxed{Paris}.") == "Paris"


def test_guards_missing_too_long_and_question_echo():
    q = "What is the capital of France?"
    assert extract_freeform(None, q) is None
    assert extract_freeform("   ", q) is None
    assert extract_freeform("Answer: ...", q) is None  # punctuation only
    assert extract_freeform("x" * 301, q) is None
    assert extract_freeform("x" * 301, q, FreeformGuards(max_answer_chars=None)) == "x" * 301
    assert extract_freeform("What is the capital of France?", q) is None
    assert extract_freeform("what is the capital of france? hmm", q) is None
    assert extract_freeform("What is the capital of France?", q, FreeformGuards(reject_question_echo=False))
    assert extract_freeform("Paris", q) == "Paris"
    with pytest.raises(ValueError, match="max_answer_chars"):
        FreeformGuards(max_answer_chars=0)


# --- the recipe hook and the rewards ------------------------------------------------------------------------------
def test_one_entry_point_chosen_by_the_recipe():
    assert CLUSTERINGS == ("math", "entailment", "embedding")
    assert isinstance(build_clusterer("math"), MathClusterer)
    assert build_clusterer("embedding").judge_kind == "embedding"
    assert build_clusterer("entailment", judge="nli", judge_model="x").judge_kind == "nli"
    with pytest.raises(ValueError, match="unknown clustering 'semantic'"):
        build_clusterer("semantic")
    with pytest.raises(ValueError, match="entailment_judge"):
        build_clusterer("entailment", judge="embedding")


def test_recipe_settings_are_checked_before_any_model_loads():
    from empo.recipe import validate

    assert EmpoArguments().clustering == "math"  # math stays the default
    with pytest.raises(ConfigError, match="clustering: 'semantic'"):
        validate(EmpoArguments(clustering="semantic"), None)
    with pytest.raises(ConfigError, match="'nli' entailment judge needs a model"):
        validate(EmpoArguments(clustering="entailment", entailment_judge="nli"), None)
    with pytest.raises(ConfigError, match="min_majority_share"):
        validate(EmpoArguments(min_majority_share=1.5), None)
    with pytest.raises(ConfigError, match="entailment_judge"):
        validate(EmpoArguments(clustering="entailment", entailment_judge="gpt"), None)


def test_the_judge_engine_is_checked_before_any_model_loads(monkeypatch):
    import sys
    from types import SimpleNamespace

    from empo.recipe import validate

    separate = SimpleNamespace(use_vllm=False, vllm_mode="server")

    def check(training=separate, **settings):
        validate(EmpoArguments(clustering="entailment", **settings), training, check_machine=False)

    with pytest.raises(ConfigError, match="judge_engine: 'tgi' is not one of"):
        check(judge_engine="tgi")
    with pytest.raises(ConfigError, match="judge_engine: 'vllm' runs the verifier judge .*, not nli"):
        check(judge_engine="vllm", entailment_judge="nli", judge_model="x")
    with pytest.raises(ConfigError, match="not clustering 'embedding'"):
        validate(EmpoArguments(clustering="embedding", judge_engine="vllm"), separate, check_machine=False)
    colocated = SimpleNamespace(use_vllm=True, vllm_mode="colocate")
    with pytest.raises(ConfigError, match="beside TRL's colocated vLLM engine"):
        check(colocated, judge_engine="vllm")
    with pytest.raises(ConfigError, match="judge_gpu_memory_utilization: 1.5"):
        check(judge_engine="vllm", judge_gpu_memory_utilization=1.5)
    with pytest.raises(ConfigError, match="judge_engine 'vllm' runs the verifier judge, not 'embedding'"):
        build_clusterer("embedding", engine="vllm")
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError, as when it is not installed
    with pytest.raises(ConfigError, match="judge_engine is 'vllm' but vLLM is not installed"):
        validate(EmpoArguments(clustering="entailment", judge_engine="vllm"), None, check_machine=True)


def freeform_reward(name, g, judge, **kw):
    return build_reward(name, g, clusterer=FreeformClusterer("entailment", judge_obj=judge), **kw)


def test_empo_reward_on_free_form_answers():
    q = "What is the capital of France?"
    judge = ScriptedJudge(both("Paris", "It is Paris"))
    comps = ["Paris", "It is Paris", "paris.", "Lyon", "", "What is the capital of France?", "y" * 400, "Lyon"]
    r = freeform_reward("empo", 8, judge)(prompts=["templated prompt"] * 8, completions=comps, problem=[q] * 8)
    # empty, echo and too long count as missing: no_answer_reward (0), and they never join a cluster
    assert r == [3 / 8, 3 / 8, 3 / 8, 2 / 8, 0.0, 0.0, 0.0, 2 / 8]
    r = freeform_reward("empo", 8, judge, no_answer_reward=-0.5)(prompts=[q] * 8, completions=comps)
    assert r[4:7] == [-0.5, -0.5, -0.5]
    group = analyse_group(["Paris", "It is Paris"], q, FreeformClusterer("entailment", judge_obj=judge))
    assert group.grade("It is Paris") == ([True, True], True)  # logging against a reference uses the same judge


def test_min_majority_share_floor_gives_the_whole_group_no_reward():
    judge = ScriptedJudge()
    comps = ["a1", "a1", "b2", "c3", "x1", "x1", "x1", "y2"]
    plain = freeform_reward("empo", 4, judge)(prompts=["q"] * 8, completions=comps)
    assert plain == [0.5, 0.5, 0.25, 0.25, 0.75, 0.75, 0.75, 0.25]
    floored = freeform_reward("empo", 4, judge, min_majority_share=0.6)(prompts=["q"] * 8, completions=comps)
    assert floored == [0.0] * 4 + plain[4:]  # 2/4 < 0.6: no consensus; 3/4 >= 0.6: rewarded as usual
    mv = freeform_reward("majority_vote", 4, judge, min_majority_share=0.6)(prompts=["q"] * 8, completions=comps)
    assert mv == [0.0] * 4 + [1.0, 1.0, 1.0, 0.0]
    math = build_reward("empo", 4, min_majority_share=0.6)(
        prompts=["q"] * 4, completions=["\\boxed{1}", "\\boxed{1}", "\\boxed{2}", "\\boxed{3}"])
    assert math == [0.0] * 4  # the floor holds for math clustering too
    with pytest.raises(ValueError, match="min_majority_share"):
        build_reward("empo", 4, min_majority_share=-0.1)


def test_train_wires_the_recipe_setting_into_dataset_and_rewards():
    from empo.clustering.math_clusters import clusterer_from_args
    from empo.training.run import build_dataset, build_rewards

    math_args = EmpoArguments(dataset_name="arith", dataset_limit=3)
    assert "problem" not in build_dataset(math_args).column_names  # the math setting is unchanged
    free = EmpoArguments(dataset_name="arith", dataset_limit=3, clustering="embedding", min_majority_share=0.4,
                         reward_funcs=["empo", "majority_vote", "format"])
    ds = build_dataset(free)
    assert ds[0]["problem"] in ds[0]["prompt"][-1]["content"]
    clusterer = clusterer_from_args(free)  # empo train builds one and gives it to the trainer too
    training = SimpleNamespace(num_generations=4, seed=7)
    empo, mv, fmt = build_rewards(free, training, clusterer)
    assert empo.clusterer is mv.clusterer is clusterer  # one judge for rewards and trainer
    assert empo.clusterer.kind == "embedding" and empo.min_majority_share == mv.min_majority_share == 0.4
    assert build_rewards(math_args, training)[0].clusterer.kind == "math"
