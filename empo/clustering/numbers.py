"""Numbers in free-form answers, written one way, and when two quantities are one.

Read: digits, decimals, fractions, thousands separators ("1,000"), English number words ("eight", "twenty-one",
"two hundred and five", "half", "dozen"); a known unit after a number is part of it (:data:`UNITS`), and
quantities of one dimension in a row add up ("8 minutes 20 seconds" = 500 s). Written (:func:`canonical`): digits,
and with ``units`` every quantity in its dimension's base unit (m, kg, s, l): "3 km" -> "3000 m", "2 hours" ->
"7200 s"; a temperature keeps its scale ("32 f", "0 c"; "degrees" alone: "deg").

:func:`same_quantity` says when two (value, unit) are one answer: the same unit, or a unit on one side only (the
question's, implied), or two temperature scales that convert to each other; and values equal -- exactly for two
integers without a unit (a count, a year: 1989 is not 1991), within :data:`TOLERANCE` otherwise (rounding: "26.2
miles" = "42.195 km"). The answering parts (:mod:`empo.clustering.answer_parts`) and the number guard
(:mod:`empo.clustering.guards`) use these.

Limits: English only; no ordinals, percentages, powers ("10^3") or compound units ("km/h", "m²").
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

UNITS = {  # unit word -> (dimension, factor to the dimension's base unit)
    **{u: ("length", 1.0) for u in ("m", "meter", "meters", "metre", "metres")},
    **{u: ("length", 1000.0) for u in ("km", "kilometer", "kilometers", "kilometre", "kilometres")},
    **{u: ("length", 0.01) for u in ("cm", "centimeter", "centimeters", "centimetre", "centimetres")},
    **{u: ("length", 0.001) for u in ("mm", "millimeter", "millimeters", "millimetre", "millimetres")},
    **{u: ("length", 1609.344) for u in ("mi", "mile", "miles")},
    **{u: ("length", 0.3048) for u in ("ft", "foot", "feet")},
    **{u: ("length", 0.0254) for u in ("inch", "inches")},
    **{u: ("mass", 1.0) for u in ("kg", "kilogram", "kilograms", "kilo", "kilos")},
    **{u: ("mass", 0.001) for u in ("g", "gram", "grams")},
    **{u: ("mass", 1000.0) for u in ("t", "tonne", "tonnes", "ton", "tons")},
    **{u: ("mass", 0.45359237) for u in ("lb", "lbs", "pound", "pounds")},
    **{u: ("time", 1.0) for u in ("s", "sec", "secs", "second", "seconds")},
    **{u: ("time", 60.0) for u in ("min", "mins", "minute", "minutes")},
    **{u: ("time", 3600.0) for u in ("h", "hr", "hrs", "hour", "hours")},
    **{u: ("time", 86400.0) for u in ("day", "days")},
    **{u: ("time", 604800.0) for u in ("week", "weeks")},
    **{u: ("volume", 1.0) for u in ("l", "liter", "liters", "litre", "litres")},
    **{u: ("volume", 0.001) for u in ("ml", "milliliter", "milliliters", "millilitre", "millilitres")},
}
BASE_UNITS = {"length": "m", "mass": "kg", "time": "s", "volume": "l"}
#: Temperature scales (kept, not converted: "degrees" alone names none) and their conversion to Celsius.
SCALE_WORDS = {"c": "c", "celsius": "c", "centigrade": "c", "f": "f", "fahrenheit": "f", "k": "k", "kelvin": "k"}
TO_CELSIUS = {"c": lambda v: v, "f": lambda v: (v - 32) * 5 / 9, "k": lambda v: v - 273.15}
DEGREES = ("degree", "degrees", "deg")
#: Two numbers within this share of the larger are one number, unless both are integers.
TOLERANCE = 0.005

NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
NUMBER_WORDS.update({w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety"
                                                            .split())})
SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}


def is_number_word(word: str) -> bool:
    return word in NUMBER_WORDS or word in SCALES or word in ("half", "dozen")


def unit_names(word: str) -> set[str]:
    """Every name of the unit ``word`` names (empty when it names none): "cm" -> {"cm", "centimetre", ...}."""
    if word in UNITS:
        return {u for u, v in UNITS.items() if v == UNITS[word]}
    if word in SCALE_WORDS:
        return {u for u, v in SCALE_WORDS.items() if v == SCALE_WORDS[word]}
    return set()


def asked_unit(question_words: list[str]) -> str | None:
    """The unit a question asks in: the first unit it names ("How many hours are in a day?" -> "hours")."""
    return next((w for w in question_words if w in UNITS and len(w) > 2), None)


def quantities(tokens: list[str], bare_unit: str | None = None) -> list[tuple[int, int, float, str | None]]:
    """(start, end, value, unit) of each number in a list of words: the unit in base units (m, kg, s, l; a
    temperature scale c/f/k; "deg"; None for a bare number, or ``bare_unit`` when given)."""
    out, i = [], 0
    while i < len(tokens):
        start = i
        value, i = _read_number(tokens, i)
        if value is None:
            i += 1
            continue
        value, unit, i = _read_unit(tokens, i, value)
        if unit is None and bare_unit is not None:
            value, unit, _ = _read_unit([bare_unit], 0, value)
        previous = out[-1] if out else None
        if previous and unit in ("s", "m") and previous[3] == unit and \
                (previous[1] == start or (previous[1] == start - 1 and tokens[start - 1] == "and")):
            out.pop()
            start, value = previous[0], previous[2] + value  # "8 minutes 20 seconds", "1 m 20 cm"
        out.append((start, i, round(float(value), 9), unit))
    return out


def _read_unit(tokens: list[str], i: int, value: float) -> tuple[float, str | None, int]:
    degrees = i < len(tokens) and tokens[i] in DEGREES
    j = i + degrees
    if j < len(tokens) and tokens[j] in SCALE_WORDS:
        return value, SCALE_WORDS[tokens[j]], j + 1
    if degrees:
        return value, "deg", i + 1
    if i < len(tokens) and tokens[i] in UNITS:
        dimension, factor = UNITS[tokens[i]]
        return value * factor, BASE_UNITS[dimension], i + 1
    return value, None, i


def same_quantity(a: tuple[float, str | None], b: tuple[float, str | None]) -> bool:
    """One answer (module docstring)."""
    (va, ua), (vb, ub) = a, b
    if ua in TO_CELSIUS and ub in TO_CELSIUS:
        va, vb, ua, ub = TO_CELSIUS[ua](va), TO_CELSIUS[ub](vb), "c", "c"
    if ua != ub and ua not in (None, "deg") and ub not in (None, "deg"):
        return False
    if not (math.isfinite(va) and math.isfinite(vb)):
        return va == vb
    if va == int(va) and vb == int(vb):  # counts, years, whole units: 1989 is not 1991, 365 days not 366
        return va == vb
    return abs(va - vb) <= TOLERANCE * max(abs(va), abs(vb))


def only_quantities(part: str) -> list[tuple[float, str | None]] | None:
    """The (value, unit) of each quantity when the part is nothing but quantities, else None."""
    tokens = part.split()
    found = quantities(tokens)
    covered = sum(end - start for start, end, _, _ in found)
    return [(v, u) for _, _, v, u in found] if found and covered == len(tokens) else None


def numbers(part: str) -> list[tuple[float, str | None]]:
    """The (value, unit) of every quantity of a part, in order."""
    return [(v, u) for _, _, v, u in quantities(part.split())]


def canonical(tokens: list[str], units: bool = True, bare_unit: str | None = None) -> list[str]:
    """The words with every number written as digits ("eight" -> "8", "twenty one" -> "21", "1,000" -> "1000"); with
    ``units``, each quantity in base units ("3 km" -> "3000 m"; ``bare_unit`` given to a bare number)."""
    out, last = [], 0
    for start, end, value, unit in quantities(tokens, bare_unit if units else None):
        if units:
            out += tokens[last:start] + [_format(value)] + ([unit] if unit else [])
        else:
            out += [*tokens[last:start], *_plain(tokens[start:end])]
        last = end
    return out + tokens[last:]


def _format(value: float) -> str:
    return str(int(value)) if abs(value) < 1e15 and value == int(value) else f"{value:.9g}"


def _plain(tokens: list[str]) -> list[str]:
    """A quantity's words with its numbers written as digits and its units as written."""
    out, i = [], 0
    while i < len(tokens):
        value, j = _read_number(tokens, i)
        if value is None:
            out.append(tokens[i])
            i += 1
        else:
            out.append(_format(value))
            i = j
    return out


def _read_number(tokens: list[str], i: int):
    """(value, next index) of the number starting at ``tokens[i]``, or (None, i)."""
    t = tokens[i]
    if re.fullmatch(r"[+-]?\d+(?:,\d{3})*(?:\.\d+)?", t):
        return float(t.replace(",", "")), i + 1
    if re.fullmatch(r"[+-]?\d+/\d+", t) and not t.endswith("/0"):
        return float(Fraction(t)), i + 1
    if t == "half":
        return 0.5, i + 1
    if t == "dozen":
        return 12.0, i + 1
    if t not in NUMBER_WORDS and t not in SCALES:
        return None, i
    total, current = 0, 0
    while i < len(tokens) and (tokens[i] in NUMBER_WORDS or tokens[i] in SCALES or _joins(tokens, i)):
        w = tokens[i]
        if w in NUMBER_WORDS:
            current += NUMBER_WORDS[w]
        elif w in SCALES:
            current = max(current, 1) * SCALES[w]
            if SCALES[w] >= 1000:
                total, current = total + current, 0
        i += 1
    return total + current, i


def _joins(tokens: list[str], i: int) -> bool:
    """An "and" inside a number: after a scale word, before a number word ("two hundred and five")."""
    return tokens[i] == "and" and 0 < i < len(tokens) - 1 and tokens[i - 1] in SCALES and tokens[i + 1] in NUMBER_WORDS
