"""Typed guards: cheap checks that say two free-form answers are *different*, which no judge's similarity overrides.

Each guard reads the answers' answering parts (:mod:`empo.clustering.answer_parts`) and returns a reason when it
finds them different, else None; :func:`different` runs them all. A guard never says *same*: two answers are merged
without a judge only when their answering parts are identical (``cluster_texts``). The guards:

* **number**: the numbers of the two parts differ (:mod:`empo.clustering.numbers`: digits, decimals, fractions,
  English number words, known units converted; the answering parts already write them one way). Silent when
  either part has no number, or when one has units and the other bare numbers ("2" / "2 hours": the unit may be
  the question's).
* **entity**: both parts name entities (words the answer capitalises, that are not function or unit words and that
  the question does not supply; a capitalised first word only when the question asks for a name: who, which,
  where) and none is shared: "Mercury" / "Jupiter", not "Leonardo" / "Leonardo da Vinci".
* **polarity**: one part is negative (no, not, never, none, n't...) and the other is not: "Yes" / "No", "It is a
  mammal" / "It is not a mammal".
* **contrast**: the parts hold two different words of one contrast set -- antonyms (hot/cold, up/down) or
  different points of one scale (freezing/cold/cool/warm/hot), which a small model or an embedding rates as
  similar -- and neither part holds the other's word; or one part is the other plus such words only, which narrow
  it ("blue" / "light blue", "Africa" / "North Africa": one-way, not the same).
  Two words that differ in their first letters only, sharing the rest (at least 5 letters), name different things:
  "endothermic" / "exothermic", "ribonucleic" / "deoxyribonucleic" (a prefix changes the word; inflections and
  spelling variants differ at the end).
* **order**: the parts hold the same content words in another order, and not as items of a list ("and", "or",
  commas): a relation reversed ("a liquid becoming a gas" / "a gas becoming a liquid").
* **restatement**: one answer only restates the question ("A color." to "What color is the sky?") and the other
  answers it.
* (the number guard also tells a year from a decade: "1989" / "the late 1980s".)

The lexicon (:data:`CONTRAST_SETS`) is written for empo (Apache-2.0, like the project): common English antonyms and
scales; no WordNet (not shippable offline here).

Limits: lexical, English; an entity written lower-case is not seen; a contrast word used in another sense ("a hot
topic") can split two answers that mean the same, and so can a clipped word ("plane" / "airplane"); a relation whose
reversal keeps its meaning ("A equals B" / "B equals A") is split.
"""

from __future__ import annotations

import re

from empo.clustering.answer_parts import FUNCTION_WORDS, POLARITY_WORDS, restates, stem
from empo.clustering.numbers import DEGREES, SCALE_WORDS, UNITS, numbers, same_quantity


def number_guard(part_a: str, part_b: str, **_) -> str | None:
    decades_a, decades_b = re.findall(r"\b\d+0s\b", part_a), re.findall(r"\b\d+0s\b", part_b)
    if bool(decades_a) != bool(decades_b) and (numbers(part_a) or numbers(part_b)):
        return "a year against a decade"  # "1989" / "the late 1980s": one narrows the other
    # A key, not the tuples: two equal values, one with a unit and one without, do not compare ("0:0S").
    a, b = (sorted(numbers(part), key=lambda q: (q[0], q[1] or "")) for part in (part_a, part_b))
    with_units = {u not in (None, "deg") for _, u in a + b}
    if not a or not b or len(with_units) > 1:  # "2" against "2 hours": the unit may be the question's
        return None
    if len(a) != len(b) or not all(same_quantity(x, y) for x, y in zip(a, b)):
        return f"numbers differ ({_fmt(a)} vs {_fmt(b)})"
    return None


def _fmt(values: list[tuple[float, str | None]]) -> str:
    return ", ".join(f"{v:g}" + (f" {u}" if u else "") for v, u in values)


NOT_ENTITIES = FUNCTION_WORDS | POLARITY_WORDS | set(UNITS) | set(SCALE_WORDS) | set(DEGREES)
#: A question starting so asks for a name: a capitalised first word of its answers is a name too.
NAME_QUESTIONS = ("who", "whom", "whose", "which", "where")


def entities(answer: str, part: str, first_word: bool = True) -> set[str]:
    """The stems of the words the answer capitalises that are in its answering part (not function, polarity or
    unit words); a sentence's first word only with ``first_word``."""
    in_part = set(part.split())
    found = set()
    for k, w in enumerate(re.findall(r"[^\W\d_]+", answer)):
        low = w.casefold()
        initial = k == 0 or re.search(rf"[.!?]\s+{re.escape(w)}\b", answer) is not None
        if w[0].isupper() and low in in_part and low not in NOT_ENTITIES and (first_word or not initial):
            found.add(stem(low))
    return found


def entity_guard(part_a: str, part_b: str, answer_a: str = "", answer_b: str = "", question: str = "",
                 **_) -> str | None:
    """Both answers name an entity and they share none. A capitalised first word says little in a sentence ("Liquid
    turning into vapour"): it counts as a name when the question asks for one (who, which, where) or the answering
    part is at most two words that are not in the contrast lexicon ("Tokyo" / "Osaka", not "Small" / "Little"); any
    capitalised word, first or not, counts as shared ("Leonardo" / "Leonardo da Vinci")."""
    asks_name = question.strip().casefold().startswith(NAME_QUESTIONS)
    short = lambda part: len(part.split()) <= 2 and not any(w in _POINT for w in part.split())  # noqa: E731
    a = entities(answer_a, part_a, first_word=asks_name or short(part_a))
    b = entities(answer_b, part_b, first_word=asks_name or short(part_b))
    if a and b and not entities(answer_a, part_a) & entities(answer_b, part_b):
        return f"different entities ({', '.join(sorted(a))} vs {', '.join(sorted(b))})"
    return None


def negative(part: str) -> bool:
    return any(w in POLARITY_WORDS and w != "yes" for w in part.split())


def polarity_guard(part_a: str, part_b: str, **_) -> str | None:
    if negative(part_a) != negative(part_b):
        return "polarity differs (one answer negates)"
    return None


#: Contrast sets: the words of one set exclude each other as answers (antonyms, or points of one scale). Inflected
#: and synonymous forms of one point share a tuple.
CONTRAST_SETS: tuple[tuple[tuple[str, ...], ...], ...] = (
    (("freezing", "frozen", "icy"), ("cold",), ("cool", "chilly"), ("lukewarm", "tepid"), ("warm",), ("hot",),
     ("boiling", "scalding")),
    (("tiny",), ("small", "little"), ("medium",), ("large", "big"), ("huge", "enormous", "giant")),
    (("smaller", "smallest", "shrinks", "shrink"), ("bigger", "larger", "biggest", "largest", "grows", "grow")),
    (("higher", "highest", "rises", "rise"), ("lower", "lowest", "falls", "drops")),
    (("hotter", "warmer", "warms", "heats"), ("colder", "cooler", "cools")),
    (("faster", "fastest"), ("slower", "slowest")), (("denser", "heavier"), ("lighter",)),
    (("short",), ("tall", "long")), (("slow", "slowly"), ("fast", "quick", "quickly", "rapid")),
    (("light",), ("heavy",)), (("light", "bright"), ("dark",)), (("high",), ("low",)), (("up",), ("down",)),
    (("left",), ("right",)), (("north", "northern"), ("south", "southern")), (("east", "eastern"), ("west", "western")),
    (("inside", "in", "inner"), ("outside", "out", "outer")), (("above", "over"), ("below", "under", "beneath")),
    (("before", "earlier"), ("after", "later")), (("early",), ("late",)), (("old", "older"), ("new", "newer")),
    (("old", "older"), ("young", "younger")), (("wet",), ("dry",)), (("hard",), ("soft",)),
    (("true", "correct", "right"), ("false", "incorrect", "wrong")), (("alive", "living"), ("dead",)),
    (("same", "similar", "identical"), ("opposite", "different")),
    (("open",), ("closed", "shut")), (("full",), ("empty",)), (("increase", "increases", "rise", "rises", "more"),
                                                              ("decrease", "decreases", "fall", "falls", "less")),
    (("positive",), ("negative",)), (("acid", "acidic"), ("base", "basic", "alkaline")),
    (("solid",), ("liquid",), ("gas", "gaseous"), ("plasma",)),
    (("day", "daytime"), ("night", "nighttime")), (("summer",), ("autumn", "fall"), ("winter",), ("spring",)),
    (("win", "wins", "won"), ("lose", "loses", "lost")), (("buy", "buys", "bought"), ("sell", "sells", "sold")),
    (("male", "man", "men"), ("female", "woman", "women")), (("rich", "wealthy"), ("poor",)),
    (("strong", "stronger"), ("weak", "weaker")), (("thick",), ("thin",)), (("wide", "broad"), ("narrow",)),
    (("deep",), ("shallow",)), (("near", "close"), ("far", "distant")), (("first",), ("last",)),
    (("beginning", "start"), ("end", "finish")), (("push",), ("pull",)), (("attract", "attracts"),
                                                                        ("repel", "repels")),
    (("expand", "expands"), ("contract", "contracts")), (("absorb", "absorbs"), ("reflect", "reflects")),
    (("converge", "converges", "converging", "convex"), ("diverge", "diverges", "diverging", "concave")),
    (("float", "floats", "floating"), ("sink", "sinks", "sinking")),
    (("plant", "plants"), ("animal", "animals")), (("vertebrate", "vertebrates"), ("invertebrate", "invertebrates")),
    (("red",), ("orange",), ("yellow",), ("green",), ("blue",), ("purple", "violet"), ("black",), ("white",),
     ("brown",), ("pink",), ("gray", "grey")),
    (("herbivore", "herbivores", "herbivorous"), ("carnivore", "carnivores", "carnivorous"),
     ("omnivore", "omnivores", "omnivorous")),
    (("mammal", "mammals"), ("bird", "birds"), ("reptile", "reptiles"), ("amphibian", "amphibians"),
     ("fish", "fishes"), ("insect", "insects")),
    (("conductor", "conductors"), ("insulator", "insulators")), (("renewable",), ("nonrenewable",)),
    (("odd",), ("even",)), (("prime",), ("composite",)), (("clockwise",), ("counterclockwise", "anticlockwise")),
    (("always",), ("sometimes",), ("never",)), (("all",), ("some",), ("none",)),
)
_POINT = {}
for _set_index, _points in enumerate(CONTRAST_SETS):
    for _point_index, _forms in enumerate(_points):
        for _form in _forms:
            _POINT.setdefault(_form, []).append((_set_index, _point_index))


def contrast_guard(part_a: str, part_b: str, **_) -> str | None:
    a, b = set(part_a.split()), set(part_b.split())
    narrower = (b - a) if a < b else (a - b) if b < a else set()
    shared_sets = {si for w in a & b for si, _ in _POINT.get(w, ())}
    if narrower and all(w in _POINT and not {si for si, _ in _POINT[w]} & shared_sets for w in narrower):
        return f"one narrows the other ({', '.join(sorted(narrower))})"  # "blue" / "light blue", not "hot cold"
    for wa in a - b:
        for wb in b - a:
            for sa, pa in _POINT.get(wa, ()):
                if any(sb == sa and pb != pa for sb, pb in _POINT.get(wb, ())):
                    return f"contrasting words ({wa} vs {wb})"
    if len(a - b) == len(b - a) == 1:
        (wa,), (wb,) = a - b, b - a
        if _prefixed(wa, wb):
            return f"words differing in a prefix ({wa} vs {wb})"
    return None


#: Shared ending letters that make two words one stem with different prefixes (module docstring).
PREFIX_STEM = 5


def _prefixed(wa: str, wb: str) -> bool:
    k = 0
    while k < min(len(wa), len(wb)) and wa[-1 - k] == wb[-1 - k]:
        k += 1
    return k >= PREFIX_STEM and wa.isalpha() and wb.isalpha()


_LIST_MARK = re.compile(r"\s*(?:,|;|&|\band\b|\bor\b)\s*")


def order_guard(part_a: str, part_b: str, answer_a: str = "", answer_b: str = "", **_) -> str | None:
    content = lambda text: [w for w in text.split() if w not in FUNCTION_WORDS]  # noqa: E731
    ca, cb = content(part_a), content(part_b)
    if ca == cb or sorted(ca) != sorted(cb) or len(ca) < 3:
        return None

    def items(answer: str) -> list[str]:  # the list items of the answer as written (parts drop "and", commas)
        words = lambda chunk: " ".join(content(re.sub(r"[^\w\s]", " ", chunk.casefold())))  # noqa: E731
        return sorted(w for w in map(words, _LIST_MARK.split(answer)) if w)

    if items(answer_a or part_a) == items(answer_b or part_b):  # "north pole and south pole": one list, reordered
        return None
    return "the same words in another order (a relation reversed)"


def restatement_guard(part_a: str, part_b: str, answer_a: str = "", answer_b: str = "", question: str = "",
                      **_) -> str | None:
    if restates(question, answer_a) != restates(question, answer_b):
        return "one answer only restates the question"
    return None


GUARDS = {"number": number_guard, "entity": entity_guard, "polarity": polarity_guard, "contrast": contrast_guard,
          "order": order_guard, "restatement": restatement_guard}


def different(part_a: str, part_b: str, answer_a: str = "", answer_b: str = "", question: str = "") -> str | None:
    """The first guard's reason the two answers differ (module docstring), or None."""
    for guard in GUARDS.values():
        reason = guard(part_a, part_b, answer_a=answer_a, answer_b=answer_b, question=question)
        if reason:
            return reason
    return None
