"""The part of a free-form answer that answers its question: what the judges compare.

Two sentences that repeat the question ("The opposite of hot is cool." / "The opposite of hot is cold.") are similar
whatever they answer, and a bare answer ("8.") is unlike a sentence that holds it ("A spider has 8 legs."): a judge
of whole sentences merges the first and splits the second. So before any judge, each answer is reduced, given its
question, to its *answering part*:

1. the answer's words (casefolded, NFKC, punctuation dropped), numbers written as digits
   (:mod:`empo.clustering.numbers`: "eight" -> "8", "twenty-one" -> "21");
2. minus every word the question supplies (the same word or one of its forms: "legs"/"leg", "whales"/"whale",
   "freezes"/"freezing"; a unit the question names, under any of its names: "centimetres" supplies "cm"), minus
   function words (articles, auxiliaries, pronouns, prepositions, "answer"); a question that offers a choice
   ("Does ice float or sink?") supplies none of its words: its options are the answers;
3. **never dropped**: negations and yes/no ("not", "no", "never", "yes", "n't");
4. a bare number gets the unit the question asks in ("How many hours are in a day?" / "24" -> 24 hours), then
   every quantity is written in base units ("24 hours" = "1,440 minutes" = "86400 s");
5. nothing left (the answer only restates the question, or is all function words): the whole normalised answer;
6. a yes/no question (it starts with an auxiliary -- "Is...", "Does..." -- and offers no "or"): "yes" or "no" when
   the answer says so (its first word; or a "yes"/"no" anywhere without the other; or a restatement: "It floats." to
   "Does ice float?" -> "yes", "It is not round." -> "no"; else its first clause read so: "A whale is a mammal, since
   it breathes air." -> "yes"); an answer that says more keeps its words ("Spiders have eight legs, not six." ->
   "8 not"), for the guards and the judge.

So "The opposite of hot is cool." -> "cool", "Mercury is the largest planet." -> "mercury", "A spider has 8 legs." ->
"8". :func:`same_part` says when two parts are one answer without a judge: equal; or quantities whose numbers agree
(:func:`empo.clustering.numbers.same_quantity`) where one side gives no unit or only "degrees"; or one number
against the same number and one word ("7" / "7 colours": the counted noun).

Limits, by design: it is lexical (no parser). A question word the answer uses to answer is dropped from both
answers alike; word order is kept (the order guard reads it: "liquid becoming gas" / "gas becoming liquid");
English only.
"""

from __future__ import annotations

import re
import unicodedata

#: Words that carry no answer: articles, auxiliaries, pronouns, prepositions, conjunctions, answer frames.
FUNCTION_WORDS = frozenset("""
a an the this that these those it its it's they them their there here
is are was were be been being am do does did done has have had having will would shall should can could may might
must of in on at to for from by with about as into onto over under than then so and or but if because while
what which who whom whose when where why how much many
i you he she we me him her us my your our his
answer final called known named also just only very really simply exactly approximately about roughly
""".split())
#: Never dropped: polarity (the polarity guard reads them).
POLARITY_WORDS = frozenset({"yes", "no", "not", "never", "none", "nothing", "nobody", "neither", "nor", "cannot"})
NEGATIONS = POLARITY_WORDS - {"yes"}
#: A question that starts with one of these is a yes/no question; its answering part is "yes" or "no".
AUXILIARIES = frozenset("is are was were do does did can could will would should has have had may might must shall"
                        .split())
AFFIRMATIVE = frozenset({"yes", "yeah", "yep", "correct", "true", "right", "indeed", "certainly", "definitely"})

_TOKEN = re.compile(r"\d+0s\b|[+-]?\d+(?:[.,]\d+)*(?:/\d+)?|[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)  # 1940s: a decade


_LATEX_FRACTION = re.compile(r"\\[dt]?frac\{\s*(\d+)\s*\}\{\s*(\d+)\s*\}")


def words(text: str) -> list[str]:
    """The text's words, casefolded (numbers kept whole: "3.5", "-2", "1/2", "1,000"; LaTeX's "\\frac{16}{2}" is
    "16/2"); "n't" becomes "not"."""
    t = _LATEX_FRACTION.sub(r" \1/\2 ", unicodedata.normalize("NFKC", text)).casefold().replace("’", "'")
    out = []
    for w in _TOKEN.findall(t):
        if w.endswith("n't"):
            out += [w[:-3] or "not", "not"] if w != "can't" else ["can", "not"]
        else:
            out.append(w)
    return out


def stem(word: str) -> str:
    """A crude stem: plural and verb endings off ("planets" -> "planet", "freezes" -> "freez")."""
    for suffix in ("ies", "es", "s", "ed", "ing"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def forms(word: str) -> set[str]:
    """The forms a word may be the question's word in: itself, its stem, and its stem + "e" ("whales" -> "whale",
    "freezing" -> "freeze"), and a unit's every name ("cm" -> "centimetres", "centimetre", ...)."""
    from empo.clustering.numbers import unit_names

    base = stem(word)
    return {word, base, base + "e", *unit_names(word)}


def _reduce(question: str | None, answer: str) -> tuple[list[str], list[str], list[str]]:
    """(the question's words, the answer's words, the answer's words the question does not supply), numbers as
    digits; a question that offers a choice ("float or sink") supplies none: its options are the answers."""
    from empo.clustering.numbers import canonical

    all_words = canonical(words(answer), units=False)
    asked = canonical(words(question or ""), units=False)
    supplied = set() if "or" in asked else {f for w in asked for f in forms(w)}
    kept = [w for w in all_words if w in POLARITY_WORDS or (w not in FUNCTION_WORDS and not forms(w) & supplied)]
    return asked, all_words, kept


def _yes_no_question(asked: list[str]) -> bool:
    return bool(asked) and asked[0] in AUXILIARIES and "or" not in asked


def answering_part(question: str | None, answer: str) -> str:
    """The answer's words that answer the question (module docstring); the whole normalised answer when none is
    left."""
    from empo.clustering.numbers import asked_unit, canonical

    asked, all_words, kept = _reduce(question, answer)
    if _yes_no_question(asked) and all_words:
        polarity = _yes_or_no(all_words, kept)
        first = _FIRST_CLAUSE.split(answer.strip(), maxsplit=1)[0]
        if polarity is None and first != answer.strip():  # "A whale is a mammal, since it breathes air.": yes
            polarity = _yes_or_no(*_reduce(question, first)[1:])
        if polarity:
            return polarity
    return " ".join(canonical(kept or all_words, bare_unit=asked_unit(asked)))


#: Where an answer's first clause ends: what a yes/no answer says first decides it when the whole does not.
_FIRST_CLAUSE = re.compile(r"\s*(?:[.;:!?]\s|,\s|\s(?:because|since|as|so|but)\s)", re.IGNORECASE)


def restates(question: str | None, answer: str) -> bool:
    """The answer adds no word to its question (only function words, or the question's own: "A color." to "What
    color is the sky?"); a yes/no question's answers always answer it."""
    asked, _, kept = _reduce(question, answer)
    return bool(asked) and not _yes_no_question(asked) and not kept


def _yes_or_no(all_words: list[str], kept: list[str]) -> str | None:
    if not all_words:  # an empty first clause: "? 0" splits before its only word
        return None
    says_yes = any(w in AFFIRMATIVE for w in all_words)
    says_no = "no" in all_words or (all_words[0] in NEGATIONS)
    if all_words[0] in AFFIRMATIVE or (says_yes and not says_no and not any(w in NEGATIONS for w in all_words)):
        return "yes"
    if says_no and not says_yes:
        return "no"
    if not [w for w in kept if w not in POLARITY_WORDS]:  # a restatement, maybe negated: "It is not round."
        return "no" if any(w in NEGATIONS for w in all_words) else "yes"
    return None


def same_part(a: str, b: str) -> bool:
    """Two answering parts that are one answer without a judge (module docstring)."""
    from empo.clustering.numbers import only_quantities, same_quantity

    if a == b:
        return True
    qa, qb = only_quantities(a), only_quantities(b)
    if qa and qb:
        return len(qa) == len(qb) and all(same_quantity(x, y) for x, y in zip(qa, qb))
    wa, wb = a.split(), b.split()
    short, long_ = (wa, wb) if len(wa) <= len(wb) else (wb, wa)
    if len(short) == 1 and len(long_) == 2 and only_quantities(short[0]) and long_[1] not in POLARITY_WORDS:
        counted = only_quantities(long_[0])
        return bool(counted) and counted[0][1] is None and same_quantity(only_quantities(short[0])[0], counted[0])
    return False
