"""The equivalence rule of final answers, which EMPO's clustering uses (extraction: :mod:`empo.grading.extract`).

These are the project's grading rules.  Everything the reward, the clustering and the evaluation say about
"the same answer" comes from :func:`is_equivalent` (and :func:`empo.clustering.math_clusters.cluster_answers`, which
applies the same relation to a whole group).

Equivalence (:func:`is_equivalent`), decided in three stages
------------------------------------------------------------
1. **Canonical form** (:func:`canonical_form`): a normalised string.  Two answers with the same canonical
   form are equivalent, without sympy or math-verify.  The normalisation:

   * drops whitespace (except between a command and a following letter, ``\\pi r``, and between two digits,
     ``2 3/4``), ``$`` math delimiters, ``\\(...\\)``/``\\[...\\]`` around the whole answer,
     ``\\left``/``\\right``/``\\big...``, the spacing commands ``\\! \\, \\; \\: \\quad \\qquad ~``,
     ``\\displaystyle``, a trailing full stop, a leading ``+`` before a digit, a whole-answer ``\\boxed{...}``;
   * rewrites ``\\dfrac``/``\\tfrac``/``\\cfrac`` to ``\\frac``, and braces one-token arguments:
     ``\\frac12`` -> ``\\frac{1}{2}``, ``\\sqrt3`` -> ``\\sqrt{3}``; a few unicode symbols (``−×·π∞°``);
   * drops degree marks (``^\\circ``, ``^{\\circ}``, ``°``) -- ``30^\\circ`` is ``30``;
   * drops the currency sign ``\\$`` and **percent signs** (``\\%``, ``%``): ``10\\%`` is ``10``, and
     therefore *not* ``0.1`` -- a percentage is compared by its numeral;
   * drops trailing units: ``\\text{...}``/``\\textrm{...}``/``\\mbox{...}`` after something else
     (``5\\text{ cm}^2`` -> ``5``), ``\\mathrm{...}`` of two or more letters (or starting with a space), and
     plain words of two or more letters after a *number* (``12 dollars``, ``3 square feet``);
   * drops a leading single-variable left-hand side, ``x=``, ``k =``, ``a_1=``, ``\\theta=`` when the rest
     contains no other relation: ``x=3`` is ``3`` (so ``x=3`` and ``y=3`` are the same answer too);
   * removes thousands separators only when the whole answer is clearly digit groups of three
     (``1,000``, ``10,\\!080``, ``1{,}000``), so tuples and lists such as ``(1,2)`` or ``1,234, 5`` survive;
     any comma that is left is written ``", "``;
   * reduces ``\\text{(A)}``, ``\\textbf{(A)}``, ``(A)``, ``\\text{A}`` (a multiple-choice letter A-E) to
     ``A``; other whole-answer ``\\text``/``\\textbf``/``\\mbox``-style wrappers become ``\\text{...}``.

   An answer whose canonical form is empty (``\\boxed{\\,}``) is treated like a missing answer: it is
   equivalent to nothing.  The later stages see canonical forms only (so ``10\\%`` is ``10`` everywhere).

2. **Numeric fast path** (:func:`numeric_value`): integers, decimals (``033``, ``.5``), ``a/b``,
   ``\\frac{a}{b}``, signs, and scientific notation (``4.4\\times10^{7}``, ``4.4\\cdot10^7``, ``4.4e7``,
   ``10^{-3}``) become an exact :class:`fractions.Fraction`.  Two numeric answers are equivalent **iff** their
   values agree within a relative tolerance of ``1e-9``; math-verify is never asked.  So ``\\frac12``,
   ``0.5`` and ``1/2`` agree, while ``1/3`` and ``0.333333`` do not (math-verify's 6-digit float rounding
   would call them equal; the fast path is deliberately stricter).  When *both* are written exactly
   (integers, or fractions of integers) only exact equality counts: ``11111111100`` and ``11111111101`` are
   different answers even though they agree to 1e-9; the tolerance is for decimals and scientific notation
   (``1.07e16`` and ``10700000000000001`` agree).

3. **math-verify** for everything else (a numeric answer against a non-numeric one, or two non-numeric
   ones): both canonical forms are parsed with ``math_verify.parse("\\boxed{<form>}")`` (LaTeX extraction
   only, so unparsable text is never read as the stray number inside it) and compared with
   ``math_verify.verify`` **in both directions**; the answers are equivalent only if both directions agree.
   math-verify's ``verify(gold, pred)`` is asymmetric (``2x+z=1`` vs ``1``, ``1<x<2`` vs ``(1,2)``); requiring
   both makes the relation symmetric and errs on the side of "different".  This covers LaTeX expressions
   (``\\frac{1}{2}\\sqrt{3}`` vs ``\\frac{\\sqrt{3}}{2}``), sets (``\\{1,2\\}`` = ``\\{2,1\\}``), intervals
   (``(1,2)`` differs from ``[1,2]``), tuples, matrices and equations.

   math-verify runs in a separate worker process (see :mod:`empo.grading.mathverify_pool`) with a soft timeout inside
   the worker and a hard wall-clock timeout in the caller, so it works from any thread (TRL reward functions,
   thread pools) and one pathological answer cannot stall a batch.  **A comparison that times out counts as
   "not equivalent"**, and an answer that times out against two different partners is compared with nothing
   more (see the worker module).  The timeout is ``DEFAULT_TIMEOUT`` seconds per comparison (5 s;
   environment variable ``EMPO_MATH_TIMEOUT``), or the ``timeout`` argument.

Model output is never passed to Python ``eval``/``exec`` or to ``sympy.sympify``/``parse_expr`` in this
process; only math-verify (inside the worker, under timeouts) turns strings into sympy objects."""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache

from empo.grading.mathverify_pool import mathverify_equivalent

#: Relative tolerance of the numeric fast path.
REL_TOL = Fraction(1, 10**9)


_UNICODE = {
    "\u2212": "-",  # minus sign
    "\u2013": "-",  # en dash
    "\u00d7": r"\times ",
    "\u22c5": r"\cdot ",
    "\u00b7": r"\cdot ",
    "\u00f7": r"\div ",
    "\u03c0": r"\pi ",
    "\u221e": r"\infty ",
    "\u00b0": r"^\circ ",
    "\u2264": r"\le ",
    "\u2265": r"\ge ",
    "\u00a0": " ",
    "\u2009": " ",
    "\u202f": " ",
}


_UNICODE_RE = re.compile("|".join(map(re.escape, _UNICODE)))


_GREEK = (
    "alpha|beta|gamma|delta|epsilon|varepsilon|zeta|eta|theta|vartheta|iota|kappa|lambda|mu|nu|xi|rho|sigma|"
    "tau|upsilon|phi|varphi|chi|psi|omega|Gamma|Delta|Theta|Lambda|Xi|Sigma|Phi|Psi|Omega"
)


_WRAPPED_BOX_RE = re.compile(r"^\\(?:boxed|fbox)\s*\{")


_DISPLAY_WRAP_RE = re.compile(r"^\\\((.*)\\\)$|^\\\[(.*)\\\]$", re.DOTALL)


_SIZING_RE = re.compile(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|Biggl|Biggr|big|Big|bigg|Bigg)"
                        r"(?![A-Za-z])\s*\.?")


# ``\left.``/``\right.`` are invisible delimiters; the regex above also eats the dot after them.  A dot after
# ``\left``/``\right`` is never a decimal point, so that is safe.
_STYLE_RE = re.compile(r"\\(?:displaystyle|textstyle|scriptstyle)(?![A-Za-z])")


_THIN_COMMA_RE = re.compile(r",\s*\\!\s*")


_BRACED_COMMA_RE = re.compile(r"(?<=\d)\{,\}(?=\d)")


_SPACING_RE = re.compile(r"(?<!\\)\\[,;:!>](?![A-Za-z])")


_WIDE_SPACE_RE = re.compile(r"\\(?:qquad|quad)(?![A-Za-z])|(?<!\\)\\ |~")


_FRAC_RE = re.compile(r"\\[dtc]frac(?![A-Za-z])")


_DEGREE_RE = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ(?![A-Za-z])|\\degree(?![A-Za-z])")


_PERCENT_RE = re.compile(r"\\?%")


_ARG_CMD_RE = re.compile(r"\\(frac|sqrt)(?![A-Za-z])")


_CMD_TOKEN_RE = re.compile(r"\\(?:[A-Za-z]+|.)")


_TEXT_CMDS = r"text|textrm|textbf|textit|textsf|texttt|textnormal|mbox"


_WHOLE_TEXT_RE = re.compile(r"^\\(?:" + _TEXT_CMDS + r")\s*\{")


_CHOICE_RE = re.compile(r"^\(?\s*([A-E])\s*\)?$")


# trailing \text{unit} (optionally squared): prefix must end in something that can carry a unit
_TRAIL_TEXT_RE = re.compile(
    r"^(?P<head>.*?[0-9A-Za-z})\]|!.])\s*\\(?:text|textrm|textnormal|mbox)\s*\{(?P<unit>[^{}]*)\}"
    r"\s*(?:\^\s*(?:\{\s*\d\s*\}|\d))?$",
    re.DOTALL,
)


_TRAIL_MATHRM_RE = re.compile(
    r"^(?P<head>.*?[0-9})\]])\s*\\mathrm\s*\{(?P<unit>[^{}]*)\}\s*(?:\^\s*(?:\{\s*\d\s*\}|\d))?$", re.DOTALL
)


_TRAIL_WORDS_RE = re.compile(
    r"^(?P<head>.*?[0-9}])\s+(?P<words>[A-Za-z]{2,}(?:[\s\-][A-Za-z]+){0,3})\s*(?:\^\s*(?:\{\s*\d\s*\}|\d))?\.?$",
    re.DOTALL,
)


_NOT_UNIT_WORDS = {"pi", "and", "or", "sqrt", "cdot", "times", "to", "mod", "for", "if"}


_LHS_RE = re.compile(
    r"^(?:[A-Za-z]|\\(?:" + _GREEK + r"))(?![A-Za-z])(?:_\{[^{}=]*\}|_[A-Za-z0-9])?\s*=\s*(?P<rest>.+)$",
    re.DOTALL,
)


_RELATION_RE = re.compile(r"=|<|>|\\(?:le|ge|leq|geq|neq|ne|lt|gt|approx|equiv|sim|leqslant|geqslant)(?![A-Za-z])")


_THOUSANDS_RE = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")


_KEEP_SPACE_RE = re.compile(r"(\\[A-Za-z]+)\s+(?=[A-Za-z])")


_DIGIT_SPACE_RE = re.compile(r"(?<=\d)\s+(?=\d)")


_WS_RE = re.compile(r"\s+")


def match_group(text: str, open_idx: int) -> int:
    """Index of the ``}`` closing the ``{`` at ``open_idx``; -1 if unbalanced.  ``\\x`` pairs are skipped."""
    depth = 0
    i, n = open_idx, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _unwrap_whole(s: str, head_re: re.Pattern) -> str | None:
    """If the whole of ``s`` is ``\\cmd{...}`` (matched by ``head_re``), the inner text; else None."""
    m = head_re.match(s)
    if not m:
        return None
    open_idx = m.end() - 1
    close = match_group(s, open_idx)
    if close != len(s) - 1:
        return None
    return s[open_idx + 1 : close]


def _brace_table(s: str) -> dict[int, int]:
    """Index of the matching ``}`` for every ``{`` that has one (``\\x`` pairs skipped), in one pass."""
    table: dict[int, int] = {}
    stack: list[int] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            stack.append(i)
        elif c == "}" and stack:
            table[stack.pop()] = i
        i += 1
    return table


def _brace_args(s: str) -> str:
    """``\\frac12`` -> ``\\frac{1}{2}``, ``\\sqrt3`` -> ``\\sqrt{3}``, ``\\frac{1}2`` -> ``\\frac{1}{2}``
    (iterative)."""
    if "\\frac" not in s and "\\sqrt" not in s:
        return s
    out: list[str] = []
    pending: dict[int, int] = {}  # index just after a closed argument group -> arguments still to brace
    i, n = 0, len(s)
    closing = _brace_table(s)

    def take_args(i: int, k: int) -> int:
        """Brace up to ``k`` arguments starting at ``i``; returns the index where scanning resumes."""
        while k > 0:
            while i < n and s[i].isspace():
                i += 1
            if i >= n:
                return i
            c = s[i]
            if c == "{":
                close = closing.get(i, -1)
                if close < 0:
                    return i
                if k > 1:
                    pending[close + 1] = pending.get(close + 1, 0) + k - 1
                return i  # the group's content is scanned by the main loop
            if c in "}^_&$[]":
                return i
            if c == "\\":
                m = _CMD_TOKEN_RE.match(s, i)
                if m is None:  # a lone backslash at the end
                    return i
                tok = m.group(0)
            else:
                tok = c
            out.append("{" + tok + "}")
            i += len(tok)
            k -= 1
        return i

    while i < n:
        if i in pending:
            k = pending.pop(i)
            j = take_args(i, k)
            if j != i:
                i = j
                continue
        m = _ARG_CMD_RE.match(s, i) if s[i] == "\\" else None
        if m is None:
            out.append(s[i])
            i += 1
            continue
        out.append(m.group(0))
        i = m.end()
        if m.group(1) == "sqrt":
            j = i
            while j < n and s[j].isspace():
                j += 1
            if j < n and s[j] == "[":
                close = s.find("]", j)
                if close < 0:
                    continue
                out.append(s[j : close + 1])
                i = close + 1
            i = take_args(i, 1)
        else:
            i = take_args(i, 2)
    return "".join(out)


@lru_cache(maxsize=65536)
def canonical_form(a: str) -> str:
    """The normalised string key of an answer (see the module docstring for the rules); ``""`` for none."""
    if not isinstance(a, str):
        return ""
    return _canonical(a, units=True)


def _canonical(a: str, units: bool) -> str:
    s = a.strip()
    if not s:
        return ""
    s = _UNICODE_RE.sub(lambda m: _UNICODE[m.group(0)], s)
    # whole-answer \boxed{...}
    for _ in range(3):
        inner = _unwrap_whole(s, _WRAPPED_BOX_RE)
        if inner is None:
            break
        s = inner.strip()
    s = s.replace("\\$", "").replace("$", "")
    s = s.strip()
    m = _DISPLAY_WRAP_RE.match(s)
    if m:
        s = (m.group(1) if m.group(1) is not None else m.group(2)).strip()
    s = _STYLE_RE.sub("", s)
    s = _SIZING_RE.sub("", s)
    s = _THIN_COMMA_RE.sub(",", s)  # "10,\!080": a LaTeX thousands separator
    s = _BRACED_COMMA_RE.sub(",", s)  # "1{,}000"
    s = _SPACING_RE.sub("", s)
    s = _WIDE_SPACE_RE.sub(" ", s)
    s = _FRAC_RE.sub(r"\\frac", s)
    s = _DEGREE_RE.sub("", s)
    s = _PERCENT_RE.sub("", s)
    s = _brace_args(s).strip()

    # whole-answer \text{...}-style wrappers; multiple-choice letters
    inner = _unwrap_whole(s, _WHOLE_TEXT_RE)
    if inner is not None:
        inner = _WS_RE.sub(" ", inner).strip()
        c = _CHOICE_RE.match(inner)
        if c:
            return c.group(1)
        if not inner:
            return ""
        return "\\text{" + inner + "}"
    c = _CHOICE_RE.match(s)
    if c and s.startswith("("):
        return c.group(1)

    if units:
        for _ in range(4):  # trailing \text{ cm}, \mbox{ inches}^2, \mathrm{kg}
            m = _TRAIL_TEXT_RE.match(s)
            if m and re.search(r"[A-Za-z]", m.group("unit")):
                s = m.group("head").strip()
                continue
            m = _TRAIL_MATHRM_RE.match(s)
            if m:
                unit = m.group("unit")
                letters = unit.strip()
                if letters.isalpha() and (len(letters) >= 2 or unit[:1].isspace()):
                    s = m.group("head").strip()
                    continue
            break

    m = _LHS_RE.match(s)
    if m and not _RELATION_RE.search(m.group("rest")):
        s = m.group("rest").strip()

    if units:
        m = _TRAIL_WORDS_RE.match(s)
        if m:
            words = re.split(r"[\s\-]+", m.group("words"))
            if not any(w.lower() in _NOT_UNIT_WORDS for w in words):
                head = _canonical(m.group("head"), units=False)
                if _numeric_from_canonical(head) is not None:
                    return head

    if s.startswith("+") and s[1:2].isdigit():
        s = s[1:]
    if _THOUSANDS_RE.match(s):
        s = s.replace(",", "")
    s = _KEEP_SPACE_RE.sub("\\1\x00", s)
    s = _DIGIT_SPACE_RE.sub("\x00", s)  # "2 3/4" must not become "23/4"
    s = _WS_RE.sub("", s).replace("\x00", " ")
    s = s.replace(",", ", ")
    if s.endswith(".") and not s.endswith(".."):
        s = s[:-1]
    return s


_NUM = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"


_PLAIN_RE = re.compile(rf"^({_NUM})$")


_ENOTATION_RE = re.compile(rf"^({_NUM})[eE]([+-]?\d+)$")


_SCI_RE = re.compile(rf"^({_NUM})(?:\\times|\\cdot|\*)10\^(?:\{{([+-]?\d+)\}}|([+-]?\d))$")


_POW10_RE = re.compile(r"^([+-]?)10\^(?:\{([+-]?\d+)\}|([+-]?\d))$")


_FRAC_NUM_RE = re.compile(rf"^([+-]?)\\frac\{{({_NUM})\}}\{{({_NUM})\}}$")


_SLASH_RE = re.compile(rf"^({_NUM})/({_NUM})$")


_MAX_DIGITS = 400  # longer numerals are left to math-verify (and its timeouts)


_MAX_EXP = 400


def _decimal(txt: str) -> Fraction | None:
    if len(txt) > _MAX_DIGITS:
        return None
    sign = -1 if txt.startswith("-") else 1
    txt = txt.lstrip("+-")
    whole, _, frac = txt.partition(".")
    num = int((whole or "0") + frac)
    return Fraction(sign * num, 10 ** len(frac))


def _scaled(mantissa: str, exp: str) -> Fraction | None:
    e = int(exp)
    if abs(e) > _MAX_EXP:
        return None
    m = _decimal(mantissa)
    if m is None:
        return None
    return m * Fraction(10) ** e


@lru_cache(maxsize=65536)
def _numeric_from_canonical(s: str) -> Fraction | None:
    if not s or len(s) > 2 * _MAX_DIGITS:
        return None
    m = _PLAIN_RE.match(s)
    if m:
        return _decimal(m.group(1))
    m = _ENOTATION_RE.match(s)
    if m:
        return _scaled(m.group(1), m.group(2))
    m = _SCI_RE.match(s)
    if m:
        return _scaled(m.group(1), m.group(2) or m.group(3))
    m = _POW10_RE.match(s)
    if m:
        v = _scaled("1", m.group(2) or m.group(3))
        return None if v is None else (-v if m.group(1) == "-" else v)
    m = _FRAC_NUM_RE.match(s)
    if m:
        num, den = _decimal(m.group(2)), _decimal(m.group(3))
        if num is None or not den:
            return None
        v = num / den
        return -v if m.group(1) == "-" else v
    m = _SLASH_RE.match(s)
    if m:
        num, den = _decimal(m.group(1)), _decimal(m.group(2))
        if num is None or not den:
            return None
        return num / den
    return None


def numeric_value(a: str) -> Fraction | None:
    """Exact value of a plainly numeric answer (after :func:`canonical_form`), else ``None``.  Never evaluates."""
    if not isinstance(a, str):
        return None
    return _numeric_from_canonical(canonical_form(a))


_EXACT_RE = re.compile(r"^[+-]?\d+$|^[+-]?\d+/[+-]?\d+$|^[+-]?\\frac\{[+-]?\d+\}\{[+-]?\d+\}$")


def is_exact_numeral(canonical: str) -> bool:
    """Whether a canonical numeric form is written exactly (an integer or a fraction of integers)."""
    return bool(_EXACT_RE.match(canonical))


def numbers_close(x: Fraction, y: Fraction, exact: bool = False) -> bool:
    """The numeric fast path's equality: equal within relative tolerance :data:`REL_TOL`.

    With ``exact=True`` (both answers written as integers or fractions of integers) only equality counts, so
    ``11111111100`` and ``11111111101`` stay apart.
    """
    if x == y:
        return True
    if exact:
        return False
    return abs(x - y) <= REL_TOL * max(abs(x), abs(y))


def mathverify_form(canonical: str) -> str:
    """The string handed to math-verify for a canonical form (``4.4e7`` becomes ``4.4\\times10^{7}``)."""
    m = _ENOTATION_RE.match(canonical)
    if m:
        return f"{m.group(1)}\\times10^{{{int(m.group(2))}}}"
    return canonical


def is_equivalent(a: str | None, b: str | None, *, timeout: float | None = None) -> bool:
    """Whether two extracted answers mean the same (symmetric; ``None``/empty -> ``False``).

    Canonical forms first, then the numeric fast path, then math-verify in a worker process in both
    directions; a math-verify timeout (``timeout`` seconds, default ``EMPO_MATH_TIMEOUT`` or 5) means ``False``.
    """
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    ca, cb = canonical_form(a), canonical_form(b)
    if not ca or not cb:
        return False
    if ca == cb:
        return True
    va, vb = _numeric_from_canonical(ca), _numeric_from_canonical(cb)
    if va is not None and vb is not None:
        return numbers_close(va, vb, exact=is_exact_numeral(ca) and is_exact_numeral(cb))
    x, y = sorted((mathverify_form(ca), mathverify_form(cb)))
    return mathverify_equivalent(x, y, timeout=timeout)
