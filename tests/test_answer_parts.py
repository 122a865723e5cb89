"""What answers the question decides what means the same: the answering part of a free-form answer
(empo.clustering.answer_parts), numbers written one way (empo.clustering.numbers), each typed guard on its own
(empo.clustering.guards), and the three wrong clusters a CPU free-form run made, fixed with the real embedding judge."""

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from empo.clustering.answer_parts import answering_part
from empo.clustering.freeform import FreeformClusterer, cluster_texts
from empo.clustering.guards import (
    contrast_guard,
    different,
    entity_guard,
    number_guard,
    order_guard,
    polarity_guard,
)
from empo.clustering.numbers import canonical, numbers


# --- reduction ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("question, answer, part", [
    ("What is the opposite of hot?", "The opposite of hot is cool.", "cool"),       # the question's words go
    ("Which planet is the largest in our solar system?", "Mercury is the largest planet.", "mercury"),
    ("How many legs does a spider have?", "A spider has 8 legs.", "8"),              # plural, auxiliary
    ("How many legs does a spider have?", "8.", "8"),                                # a bare answer stays
    ("How many legs does a spider have?", "Eight", "8"),                             # number words
    ("Is a whale a mammal?", "No, it isn't.", "no"),                                 # a yes/no question: yes or no
    ("Is a whale a mammal?", "A whale is a mammal.", "yes"),                         # a plain restatement: yes
    ("Does ice float?", "It does not float.", "no"),                                 # a negated one: no
    ("Is a whale a mammal?", "A whale is a mammal, since it breathes air.", "yes"),  # the first clause decides
    ("Does ice float?", "It does not float, because water is denser.", "no"),
    ("Do spiders have six legs?", "Spiders have eight legs, not six.", "8 not"),     # says more: its words
    ("Does ice float or sink?", "It floats.", "floats"),                             # "or": its options are answers
    ("What is the capital of France?", "The capital of France is Paris.", "paris"),
    ("What is 3 times 4?", "three times four is twelve", "12"),                      # the question's numbers go
    ("How many days are in a week?", "7 days", "604800 s"),                          # in the question's unit...
    ("How many days are in a week?", "seven", "604800 s"),                           # ...a bare number too
    ("How many centimetres are in a metre?", "100 cm", "1 m"),                       # a unit's other name
    ("", "Whales are mammals.", "whales mammals"),                                   # nothing supplied
    ("How far is the station?", "3 km", "3000 m"),                                   # units after that
    ("", "The Pacific Ocean", "pacific ocean"),                                      # no question: the answer
])
def test_the_answering_part_is_what_the_question_does_not_supply(question, answer, part):
    assert answering_part(question, answer) == part


def test_numbers_are_written_one_way():
    assert canonical("twenty one".split()) == ["21"] and canonical(["two", "hundred", "and", "five"]) == ["205"]
    assert canonical(["1,000"]) == ["1000"] and canonical(["1/2"]) == ["0.5"] and canonical(["3.50"]) == ["3.5"]
    assert canonical(["2", "hours"]) == ["7200", "s"] and canonical(["2", "hours"], units=False) == ["2", "hours"]
    assert numbers("120 minutes or 2 hours") == [(7200.0, "s"), (7200.0, "s")]
    assert numbers("one and two") == [(1.0, None), (2.0, None)]  # "and" joins only inside a number
    assert numbers("no numbers here") == []


# --- each guard on its own -----------------------------------------------------------------------------------------
def test_number_guard():
    assert number_guard("7", "8") == "numbers differ (7 vs 8)"
    assert number_guard("1989", "late 1980s") == "a year against a decade"
    assert number_guard("8", "8") is None and number_guard("8", "many") is None  # silent without two numbers
    assert number_guard("3000 m", "3 m") is not None and number_guard("7200 s", "7200 s") is None
    assert number_guard("7200 s", "2") is None  # units on one side only: the unit may be the question's


def test_entity_guard():
    assert entity_guard("mercury", "jupiter", answer_a="Mercury", answer_b="Jupiter") == \
        "different entities (mercury vs jupiter)"
    assert entity_guard("paris france", "paris", answer_a="Paris, France", answer_b="Paris") is None  # shared
    assert entity_guard("mercury", "jupiter", answer_a="mercury", answer_b="jupiter") is None  # none capitalised
    assert entity_guard("yes", "no", answer_a="Yes", answer_b="No") is None  # polarity words are not entities


def test_polarity_guard():
    assert polarity_guard("yes", "no") is not None
    assert polarity_guard("mammal", "not mammal") is not None
    assert polarity_guard("no not", "no") is None and polarity_guard("mammal", "whale mammal") is None


def test_contrast_guard():
    assert contrast_guard("cool", "cold") == "contrasting words (cool vs cold)"  # points of one scale
    assert contrast_guard("solid water", "liquid water") is not None
    assert contrast_guard("cool", "chilly") is None  # one point
    assert contrast_guard("hot cold", "cold") is None  # the other's word is in both: no contrast claimed
    assert contrast_guard("paris", "lyon") is None
    assert contrast_guard("blue", "light blue") == "one narrows the other (light)"  # one-way: not the same
    assert contrast_guard("africa", "north africa") is not None and contrast_guard("honey", "makes honey") is None
    # one word for another that differs in its first letters only: a prefix changed it
    assert contrast_guard("endothermic", "exothermic") == "words differing in a prefix (endothermic vs exothermic)"
    assert contrast_guard("deoxyribonucleic acid", "ribonucleic acid") is not None
    assert contrast_guard("stable", "unstable") is not None
    for a, b in [("organise", "organize"), ("colour", "color"), ("photograph", "photography"), ("ice", "dice"),
                 ("leaves", "leaf")]:  # spelling, inflection (they differ at the end), and stems under 5 letters
        assert contrast_guard(a, b) is None, (a, b)


def test_order_guard():
    q = "What is evaporation?"

    def order(a, b):
        return order_guard(answering_part(q, a), answering_part(q, b), answer_a=a, answer_b=b)

    assert order("A liquid becoming a gas.", "A gas becoming a liquid.") == \
        "the same words in another order (a relation reversed)"
    assert order("Cats chase mice", "Mice chase cats") is not None
    assert order("Water turns into ice", "Ice turns into water") is not None
    # a list in another order is the same list
    assert order("The north pole and the south pole", "the south pole, and the north pole") is None
    assert order("salt, pepper and oil", "oil, salt and pepper") is None
    assert order("red and blue", "blue and red") is None
    assert order("A liquid becoming a gas.", "A liquid becoming a gas") is None  # the same order
    assert order("gas liquid", "liquid gas") is None  # two words: too little to read a relation


def test_quantities_are_one_answer_within_rounding_but_integers_exactly():
    from empo.clustering.answer_parts import same_part
    from empo.clustering.numbers import same_quantity

    assert same_quantity((42164.8128, "m"), (42195.0, "m"))       # 26.2 miles against 42.195 km
    assert not same_quantity((1989.0, None), (1991.0, None))      # years and counts: exactly
    assert not same_quantity((31622400.0, "s"), (31536000.0, "s"))  # 366 days against 365
    assert same_quantity((98.6, "f"), (37.0, "c")) and same_quantity((100.0, "deg"), (100.0, "c"))
    assert not same_quantity((2.0, "m"), (2.0, "kg"))
    assert same_part("100", "100 deg") and same_part("7", "7 colours") and not same_part("7", "7 colours red")
    assert not same_part("8", "8 not") and not same_part("paris", "lyon")


def test_entity_guard_reads_a_first_word_as_a_name_only_where_it_can_be_one():
    q = "What is the capital of Japan?"
    assert entity_guard("tokyo", "osaka", answer_a="Tokyo", answer_b="Osaka", question=q)  # short parts
    assert entity_guard("small", "little", answer_a="Small", answer_b="Little", question=q) is None  # lexicon words
    assert entity_guard("leonardo", "leonardo da vinci", answer_a="Leonardo", answer_b="Leonardo da Vinci",
                        question="Who painted the Mona Lisa?") is None  # shared, counting every capital
    assert entity_guard("liquid turning vapour", "water changing water vapour", answer_a="Liquid turning into vapour",
                        answer_b="Water changing to water vapour", question="What is evaporation?") is None


def test_an_answer_that_only_restates_the_question_differs_from_one_that_answers():
    from empo.clustering.guards import restatement_guard

    q = "What color is the sky on a clear day?"
    assert restatement_guard("a color", "blue", answer_a="A color", answer_b="Blue", question=q)
    assert restatement_guard("a color", "the color", answer_a="A color", answer_b="The color.", question=q) is None
    assert restatement_guard("yes", "no", answer_a="It is.", answer_b="No", question="Is the sky blue?") is None


def test_a_guard_says_different_never_same():
    assert different("cool", "cold") and different("7", "8")
    assert different("frozen water", "solid water") is None  # no guard fires: the judge decides, not the guards


# --- pathological input ---------------------------------------------------------------------------------------------
#: Words the reduction and the guards act on: random text seldom holds a number next to a unit, a decade, a yes/no.
PARTS = ["0", "8", "8.5", "1/2", "1,000", "-3", "1e999", "inf", "nan", "eight", "twenty", "hundred", "half", "dozen",
         "km", "m", "s", "S", "min", "hours", "degrees", "c", "f", "kelvin", "0:0S", "1980s", "1989", "and", "yes",
         "No", "not", "is", "isn't", "Paris", "Mercury", "hot", "cold", "cool", "the", "of", "or", "?", ".", ",", ""]
ODD_TEXT = st.lists(st.sampled_from(PARTS) | st.text(max_size=6), max_size=12).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80) | ODD_TEXT, st.text(max_size=200) | ODD_TEXT, st.text(max_size=200) | ODD_TEXT)
@example(question="", a="", b="0:0S")  # CI: "0" and "0 s" sorted as tuples compared None with "s"
@example(question="IS", a="", b="? 0")  # a yes/no question, an answer whose first clause is empty: IndexError
def test_reduction_and_guards_take_any_text(question, a, b):
    pa, pb = answering_part(question, a), answering_part(question, b)
    assert isinstance(pa, str) and pa == answering_part(question, a)  # deterministic
    reason = different(pa, pb, a, b, question)
    assert reason is None or isinstance(reason, str)
    assert different(pa, pa, a, a, question) is None  # an answer never differs from itself


@pytest.mark.parametrize("text", ["9" * 5000, "1" * 400 + " km", "1/" + "7" * 300, "-" * 1000 + "1",
                                  "twenty " * 2000, "1,000," * 500, "\x00\ufeff\u202e 8 legs", "inf nan 1e999"])
def test_huge_and_odd_numbers_do_not_break_it(text):
    part = answering_part("How many legs?", text)
    assert isinstance(part, str)
    assert different(part, "8", text, "8") in (None,) or isinstance(different(part, "8", text, "8"), str)


# --- the three wrong clusters of a 2-step CPU free-form run, with the real embedding judge ---------------------------
@pytest.fixture(scope="module")
def embedding_clusterer():
    return FreeformClusterer("embedding")  # the shipped all-MiniLM-L6-v2 (as tests/test_judges.py)


@pytest.mark.parametrize("question, answers, expected", [
    ("What is the opposite of hot?", ["The opposite of hot is cool.", "The opposite of hot is cold.", "Cold."],
     [[0], [1, 2]]),
    ("Which planet is the largest in our solar system?",
     ["Mercury is the largest planet.", "Jupiter is the largest planet.", "Jupiter"], [[0], [1, 2]]),
    ("How many legs does a spider have?", ["8.", "A spider has 8 legs.", "Spiders have eight legs.", "6"],
     [[0, 1, 2], [3]]),
])
def test_the_three_wrong_clusters_of_the_cpu_run_are_fixed(embedding_clusterer, question, answers, expected):
    judge = embedding_clusterer.judge
    same = expected == [[0, 1, 2], [3]]  # the first two answers mean the same
    assert judge.same_meaning(question, [(answers[0], answers[1])])[0] != same  # whole sentences: judged wrong
    ids = cluster_texts(question, answers, judge)
    groups = {}
    for i, c in enumerate(ids):
        groups.setdefault(c, []).append(i)
    assert sorted(groups.values()) == expected
