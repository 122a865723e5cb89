"""Answer extraction and the equivalence rule (empo.grading.answers), including the math-verify worker's timeouts."""

from __future__ import annotations

import json
import threading
import time
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from empo.grading import answers as answers_mod
from empo.grading import mathverify_pool as pool
from empo.grading.answers import canonical_form, is_equivalent, numeric_value
from empo.grading.extract import extract_answer, extract_last_number

DATA = Path(__file__).resolve().parents[1] / "data"
BENCHMARKS = ["math500", "minerva_math", "olympiadbench", "aime24", "amc23", "gsm8k"]


# ------------------------------------------------------------------------------------------------
# extract_answer
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"so the answer is $\boxed{42}$.", "42"),
        (r"\boxed{\frac{1}{\sqrt{2}}}", r"\frac{1}{\sqrt{2}}"),
        (r"\boxed{ {a}^{ {b} } }", r"{a}^{ {b} }"),
        (r"first \boxed{1}, then \boxed{2}, finally \boxed{3}", "3"),
        (r"\fbox{7}", "7"),
        (r"\boxed{1} and \fbox{x+1}", "x+1"),
        (r"\boxed 5", "5"),
        (r"The answer is $\boxed 5$.", "5"),
        (r"\boxed{\{1,2\}}", r"\{1,2\}"),
        (r"\boxed{\left\{ 1 \right\}}", r"\left\{ 1 \right\}"),
        ("\\boxed{  \n 12 \t }", "12"),
        (r"\boxed{\boxed{3}}", "3"),
        (r"\boxed{\text{(C)}}", r"\text{(C)}"),
        (r"\boxed{a \\ b}", r"a \\ b"),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "no box here, the answer is 42",
        "",
        r"\boxed{",
        r"\boxed{\frac{1}{2}",  # unbalanced (truncated completion)
        r"\boxed{1} then \boxed{2",  # the LAST box is unbalanced: no fallback to the earlier one
        r"\boxed{}",
        r"\boxed{   }",
        r"\boxed",
        r"\boxed   ",
        r"\boxedx{3}",  # a different command
        r"\boxed{1\}",  # escaped brace does not close
    ],
)
def test_extract_answer_none(text):
    assert extract_answer(text) is None


def test_extract_answer_non_string():
    assert extract_answer(None) is None  # type: ignore[arg-type]


def test_extract_last_number_is_separate():
    assert extract_last_number("we get 3 apples and then 1,234.5 pears.") == "1234.5"
    assert extract_last_number("x = -7") == "-7"
    assert extract_last_number("nothing") is None
    # the reward's extraction never falls back to numbers
    assert extract_answer("we get 3 apples") is None


# ------------------------------------------------------------------------------------------------
# canonical form and the numeric fast path
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "a, expected",
    [
        (r"\frac12", r"\frac{1}{2}"),
        (r"\dfrac{1}{2}", r"\frac{1}{2}"),
        (r"\tfrac 3 4", r"\frac{3}{4}"),
        (r"\frac{270}7\text{ degrees}", r"\frac{270}{7}"),
        (r"\sqrt3", r"\sqrt{3}"),
        (r"\frac{\sqrt3}{2}", r"\frac{\sqrt{3}}{2}"),
        (r"\frac\pi2", r"\frac{\pi}{2}"),
        (r" $x = 3$ ", "3"),
        (r"k =3", "3"),
        (r"a_{1} = 7", "7"),
        (r"\theta=\frac{\pi}{4}", r"\frac{\pi}{4}"),
        (r"10\%", "10"),
        ("62.5%", "62.5"),
        (r"90^\circ", "90"),
        (r"90^{\circ}", "90"),
        (r"\$32,\!348", "32348"),
        ("58,500", "58500"),
        (r"11,\! 111,\! 111,\! 100", "11111111100"),
        (r"1{,}000", "1000"),
        (r"864 \mbox{ inches}^2", "864"),
        (r"5.4 \text{ cents}", "5.4"),
        ("12 dollars", "12"),
        ("3 square feet", "3"),
        (r"\text{(C)}", "C"),
        (r"\textbf{(C)}", "C"),
        ("(C)", "C"),
        (r"\left( 3, \frac{\pi}{2} \right)", r"(3, \frac{\pi}{2})"),
        ("(1,2)", "(1, 2)"),
        (r"\pi r^2", r"\pi r^2"),
        ("5.", "5"),
        (r"\boxed{5}", "5"),
        (r"\,", ""),
        ("", ""),
    ],
)
def test_canonical_form(a, expected):
    assert canonical_form(a) == expected


def test_canonical_form_keeps_structure():
    # tuples/lists are not mistaken for thousands separators, and a relation with another "=" is kept
    assert canonical_form("(1,000)") != canonical_form("1000")
    assert canonical_form("1, 234") != canonical_form("1,234")
    assert canonical_form("x=1, y=2") == "x=1, y=2"
    assert canonical_form("f(x)=2x") == "f(x)=2x"
    assert canonical_form(r"2 \pi") != canonical_form("2")  # \pi is not a unit
    assert canonical_form("2 3/4") == "2 3/4"  # digits separated by a space are not glued together
    assert numeric_value("2 3/4") is None
    assert canonical_form(r"\mathbf{v}") == r"\mathbf{v}"
    assert canonical_form(r"\text{ no  solution }") == r"\text{no solution}"


@pytest.mark.parametrize(
    "a, value",
    [
        ("3", Fraction(3)),
        ("033", Fraction(33)),
        ("-2.50", Fraction(-5, 2)),
        (".5", Fraction(1, 2)),
        ("1/2", Fraction(1, 2)),
        (r"\frac{-3}{4}", Fraction(-3, 4)),
        (r"-\frac{3}{4}", Fraction(-3, 4)),
        (r"\dfrac12", Fraction(1, 2)),
        (r"4.4\times10^{7}", Fraction(44_000_000)),
        (r"4.4 \cdot 10^7", Fraction(44_000_000)),
        ("4.4e7", Fraction(44_000_000)),
        ("1.24e-8", Fraction(124, 10**10)),
        ("10^{-3}", Fraction(1, 1000)),
        (r"1,000,000", Fraction(10**6)),
        (r"10\%", Fraction(10)),
        ("7 cm", Fraction(7)),
    ],
)
def test_numeric_value(a, value):
    assert numeric_value(a) == value


@pytest.mark.parametrize("a", ["x", r"\sqrt{2}", "(1,2)", "1/0", r"\frac{1}{0}", "1e999999999", "9" * 5000, "1, 2"])
def test_numeric_value_none(a):
    t = time.monotonic()
    assert numeric_value(a) is None
    assert time.monotonic() - t < 1.0  # huge exponents are refused, not computed


# ------------------------------------------------------------------------------------------------
# is_equivalent
# ------------------------------------------------------------------------------------------------

EQUIVALENT = [
    (r"\frac12", "0.5"),
    (r"\frac12", "1/2"),
    (r"\frac12", r"\frac{1}{2}"),
    ("0.5", "1/2"),
    ("x=3", "3"),
    (r"10\%", "10"),
    (r"4.4\times10^{7}", "44000000"),
    ("4.4e7", r"4.4 \times 10^{7}"),
    (r"\frac{\sqrt{3}}{2}", r"\frac{\sqrt3}{2}"),
    (r"\frac{\sqrt{3}}{2}", r"\frac{1}{2}\sqrt{3}"),  # needs math-verify
    (r"\{1,2\}", r"\{2,1\}"),  # sets
    ("(1,2)", r"\left(1, 2\right)"),
    ("033", "33"),
    ("1.07e16", "10700000000000001"),  # a decimal/scientific side: relative tolerance 1e-9
    ("0.3333333333333", "1/3"),
    ("x^2-1", "(x-1)(x+1)"),
    (r"\sqrt{8}", r"2\sqrt{2}"),
    ("2", r"\sqrt{4}"),  # numeric vs non-numeric goes to math-verify
    (r"\text{(C)}", "C"),
    (r"90^\circ", "90"),
]

NOT_EQUIVALENT = [
    ("(1,2)", "[1,2]"),  # open vs closed interval
    ("2", "3"),
    (r"10\%", "0.1"),  # percent is stripped, so 10% is 10
    ("1/3", "0.333333"),  # numeric fast path: relative tolerance 1e-9
    ("11111111100", "11111111101"),  # both written exactly: only equality counts
    (r"\frac{1}{3}", r"\frac{1000000001}{3000000000}"),
    (r"\frac{\sqrt{3}}{2}", r"\sqrt{3}"),
    ("(1,2)", "(2,1)"),
    ("x+1", "x-1"),
    (r"\{1,2\}", r"\{1,3\}"),
    # unparsable text is not read as the stray number inside it
    ("t(0, 4]", "4"),
    ("[1,8,19), (2,7,13), (4,5,7]", "7"),
    # math-verify accepts these in one direction only; equivalence requires both
    ("2x+z=1", "1"),
    ("1<x<2", "(1,2)"),
]


@pytest.mark.parametrize("a, b", EQUIVALENT)
def test_is_equivalent_true(a, b):
    assert is_equivalent(a, b)
    assert is_equivalent(b, a)


@pytest.mark.parametrize("a, b", NOT_EQUIVALENT)
def test_is_equivalent_false(a, b):
    assert not is_equivalent(a, b)
    assert not is_equivalent(b, a)


@pytest.mark.parametrize("a, b", [(None, None), (None, "1"), ("1", None), ("", ""), ("", "1"), ("  ", "  "),
                                  (r"\,", r"\,")])
def test_is_equivalent_missing_is_false(a, b):
    assert not is_equivalent(a, b)


def test_is_equivalent_symmetric():
    pool_ = sorted({x for pair in EQUIVALENT + NOT_EQUIVALENT for x in pair})[:14]
    for i, a in enumerate(pool_):
        for b in pool_[i + 1 :]:
            assert is_equivalent(a, b) == is_equivalent(b, a), (a, b)


def test_fast_paths_do_not_call_mathverify(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("math-verify must not be called")

    monkeypatch.setattr(answers_mod, "mathverify_equivalent", boom)
    assert is_equivalent(r"\dfrac{1}{2}", r"\frac12")  # same canonical form
    assert is_equivalent("0.5", "1/2")  # numeric
    assert not is_equivalent("0.5", "0.6")
    assert is_equivalent(r"4.4\times10^{7}", "44000000")
    assert not is_equivalent("1/3", "0.333333")


# ------------------------------------------------------------------------------------------------
# real benchmark gold answers
# ------------------------------------------------------------------------------------------------


def _golds():
    out = []
    for name in BENCHMARKS:
        path = DATA / "benchmarks" / f"{name}.jsonl"
        with path.open() as f:
            out += [(name, json.loads(line)["answer"]) for line in f if line.strip()]
    return out


def test_every_benchmark_gold_extracts_and_is_self_equivalent():
    golds = _golds()
    assert len(golds) > 2500
    t = time.monotonic()
    bad = []
    for name, gold in golds:
        if extract_answer("Reasoning... so the final answer is \\boxed{" + gold + "}.") != gold.strip():
            bad.append((name, "extract", gold))
        if not is_equivalent(gold, gold):
            bad.append((name, "self", gold))
        if not canonical_form(gold):
            bad.append((name, "empty canonical form", gold))
    elapsed = time.monotonic() - t
    assert not bad, bad[:10]
    print(f"{len(golds)} gold answers checked in {elapsed:.2f}s")
    assert elapsed < 30


# ------------------------------------------------------------------------------------------------
# pathological answers, timeouts, threads
# ------------------------------------------------------------------------------------------------

NESTED_FRAC = "\\frac{1}{" * 500 + "2" + "}" * 500
PATHOLOGICAL = [
    "10^{10^{10^{10}}}",
    NESTED_FRAC,
    "\\sqrt{" * 300,
    "1000000!",
]


def test_pathological_answers_return_on_main_thread():
    t = time.monotonic()
    for p in PATHOLOGICAL:
        assert is_equivalent(p, "5", timeout=1.5) in (True, False)
    assert time.monotonic() - t < 60


def test_pathological_answers_return_from_a_thread():
    # different strings from the main-thread test, so no cached result short-cuts the work
    results: list[bool] = []
    errors: list[BaseException] = []

    def work():
        try:
            for p in ["9^{9^{9^{9}}}", "2000000!", "\\frac{1}{" * 400 + "3" + "}" * 400]:
                results.append(is_equivalent(p, "7", timeout=1.5))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    th = threading.Thread(target=work)
    t = time.monotonic()
    th.start()
    th.join(90)
    assert not th.is_alive(), "is_equivalent stalled in a thread"
    assert not errors, errors
    assert len(results) == 3
    assert time.monotonic() - t < 60
    assert is_equivalent(r"\frac{\sqrt{3}}{2}", r"\frac{1}{2}\sqrt{3}")  # the worker still works afterwards


def test_worker_hard_timeout_and_crash_recovery(monkeypatch):
    """A worker stuck in uninterruptible code is killed and replaced; so is one that dies."""
    hang, crash = r"\hangmarker{1}", r"\crashmarker{1}"
    monkeypatch.setenv("EMPO_MATH_TEST_HANG", hang)
    monkeypatch.setenv("EMPO_MATH_TEST_CRASH", crash)
    pool.shutdown()  # new workers read the fault-injection variables
    try:
        t = time.monotonic()
        labels = pool.mathverify_cluster([r"\sqrt{2}", hang, r"2^{1/2}", crash, r"\frac{2}{\sqrt{2}}"], timeout=1.0)
        assert time.monotonic() - t < 60
        assert labels[0] == labels[2] == labels[4]
        assert labels[1] == 1 and labels[3] == 3  # failures count as "not equivalent"
        # the poisoned strings are remembered: no second stall
        t = time.monotonic()
        labels = pool.mathverify_cluster([hang, r"\sqrt{2}"], timeout=1.0)
        assert labels == [0, 1]
        assert time.monotonic() - t < 5
    finally:
        monkeypatch.delenv("EMPO_MATH_TEST_HANG")
        monkeypatch.delenv("EMPO_MATH_TEST_CRASH")
        pool.shutdown()


def test_concurrent_threads():
    pairs = [(r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}", True), (r"(1,3)", r"[1,3]", False),
             (r"\{3,4\}", r"\{4,3\}", True)]
    out: dict[int, bool] = {}

    def work(k):
        a, b, _ = pairs[k % len(pairs)]
        out[k] = is_equivalent(a, b)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert all(out[k] == pairs[k % len(pairs)][2] for k in range(6)), out


# ------------------------------------------------------------------------------------------------
# fuzzing
# ------------------------------------------------------------------------------------------------

TOKENS = [
    "\\frac", "\\dfrac", "{", "}", "^", "_", "\\sqrt", "\\boxed{", "\\boxed ", "\\fbox{", "\\left(", "\\right)",
    "(", ")", "[", "]", ",", "x", "y", "=", "+", "-", "/", ".", " ", "0", "1", "2", "7", "10", "\\%", "%", "$",
    "\\text{", "cm", "\\pi", "\\{", "\\}", "\\", "^\\circ", "e", "\\times", "\\!", ",\\!", "\\infty", "!",
]
latexish = st.lists(st.sampled_from(TOKENS), max_size=25).map("".join)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(latexish, st.text(max_size=40), st.text(alphabet="\\{}$0123456789., ", max_size=30)))
def test_fuzz_extraction_and_canonical_form_never_raise(text):
    got = extract_answer(text)
    assert got is None or (got == got.strip() and got)
    c = canonical_form(text)
    assert isinstance(c, str)
    v = numeric_value(text)
    assert v is None or isinstance(v, Fraction)
    if got is not None:
        canonical_form(got)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(latexish, latexish)
def test_fuzz_is_equivalent_never_raises(a, b):
    r = is_equivalent(a, b, timeout=1.0)
    assert r in (True, False)
    assert is_equivalent(b, a, timeout=1.0) == r
