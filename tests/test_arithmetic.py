import pytest

from empo import arithmetic
from empo.data import DataSpec, load_questions


def test_splits_do_not_overlap_across_seeds_and_levels():
    levels = tuple(arithmetic.LEVELS)
    train = {q["problem"] for seed in (0, 1) for q in arithmetic.generate("train", 1500, levels, seed=seed)}
    test = {q["problem"] for seed in (0, 1) for q in arithmetic.generate("test", 400, levels, seed=seed)}
    assert train and test
    assert not train & test


def test_generation_is_seeded_and_unique():
    big = ("add2", "mul2", "word")
    a = arithmetic.generate("train", 300, big, seed=3)
    b = arithmetic.generate("train", 300, big, seed=3)
    c = arithmetic.generate("train", 300, big, seed=4)
    assert a == b
    assert a != c
    assert len({q["id"] for q in a}) == len(a) == 300


@pytest.mark.parametrize("level", sorted(arithmetic.LEVELS))
def test_gold_answers_are_right(level):
    for q in arithmetic.generate("train", 30, (level,), seed=0):
        assert q["level"] == level
        text = q["problem"]
        if level == "word":
            continue  # checked below through the template arithmetic
        expr = text.removeprefix("What is ").removesuffix("?").replace("×", "*")
        # the expression is only digits and + - * by construction; evaluate it without eval()
        tokens = expr.split()
        value = int(tokens[0])
        terms = [value]
        for op, num in zip(tokens[1::2], tokens[2::2]):
            if op == "*":
                terms[-1] *= int(num)
            else:
                terms.append(int(num) if op == "+" else -int(num))
        assert str(sum(terms)) == q["answer"], text


def test_word_problem_answers():
    for q in arithmetic.generate("test", 40, ("word",), seed=1):
        nums = [int(w) for w in q["problem"].replace(".", " ").split() if w.isdigit()]
        a, b = nums
        expected = a + b if "more" in q["problem"] else a - b if "gives away" in q["problem"] else a * b
        assert q["answer"] == str(expected)


def test_small_level_runs_out_then_stops():
    rows = arithmetic.generate("test", 1000, ("add1",), seed=0)
    assert 5 < len(rows) < 100  # one-digit addition has 100 questions, a fifth of them held out


def test_unknown_level_is_named():
    with pytest.raises(ValueError, match="nope"):
        load_questions(DataSpec(name="arith:add1,nope"))


def test_loader_picks_levels_and_size():
    rows = load_questions(DataSpec(name="arith:mul1,add2", split="test", limit=20))
    assert len(rows) == 20
    assert {r["level"] for r in rows} == {"mul1", "add2"}
