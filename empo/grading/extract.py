"""The final answer of a completion: the content of its last ``\\boxed{}``.

Extraction (:func:`extract_answer`)
-----------------------------------
* The answer is the content of the **last** ``\\boxed{...}`` or ``\\fbox{...}`` in the text, with proper brace
  matching (nested groups such as ``\\boxed{\\frac{1}{\\sqrt{2}}}`` work; escaped braces ``\\{``/``\\}`` do not
  count).  The TeX short form ``\\boxed 5`` (one token, up to the next space or ``$``) is accepted too.
* Surrounding whitespace is stripped.  ``None`` when there is no box, when the last box's braces are
  unbalanced (a truncated completion), or when its content is empty or normalises to nothing
  (``\\boxed{\\,}``), so such answers count as missing everywhere (rewards, clustering, metrics).
* There is **no** last-number fallback.  :func:`extract_last_number` exists, separately, for evaluation
  baselines that want one; the reward never uses it.
"""

from __future__ import annotations

import re

from empo.grading.answers import canonical_form, match_group

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


_SHORT_TOKEN_RE = re.compile(r"[^\s$]+")


def extract_answer(text: str) -> str | None:
    """Content of the last ``\\boxed{...}``/``\\fbox{...}`` (or ``\\boxed 5``) in ``text``, stripped; else ``None``."""
    if not isinstance(text, str):
        return None
    last = None
    for last in _BOX_RE.finditer(text):  # noqa: B007 - the loop leaves the last match in `last`
        pass
    if last is None:
        return None
    i, n = last.end(), len(text)
    j = i
    while j < n and text[j].isspace():
        j += 1
    if j >= n:
        return None
    if text[j] == "{":
        k = match_group(text, j)
        if k < 0:
            return None
        content = text[j + 1 : k]
    elif text[j] in "}$":
        return None
    else:
        m = _SHORT_TOKEN_RE.match(text, j)
        content = m.group(0) if m else ""
        content = content.rstrip(".,;:")
        # a short form inside a group, "{\boxed 5}": drop unmatched closing braces
        while content.endswith("}") and content.count("}") > content.count("{"):
            content = content[:-1]
    content = content.strip()
    # An answer that normalises to nothing (``\\boxed{\\,}``) is no answer: it must not win clusters or rewards.
    return content if content and canonical_form(content) else None


_LAST_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def extract_last_number(text: str) -> str | None:
    """The last number in ``text`` (commas removed), for evaluation fallbacks only -- never used by rewards."""
    if not isinstance(text, str):
        return None
    found = _LAST_NUMBER_RE.findall(text)
    if not found:
        return None
    num = found[-1].replace(",", "").rstrip(".")
    return num or None
