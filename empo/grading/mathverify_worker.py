"""The worker side of :mod:`empo.grading.mathverify_pool`: the group algorithm and the math-verify calls.

* **One task per group.**  The caller sends all distinct strings of a group at once; the worker takes them in
  order, parsing each and comparing it with the earlier strings of still-separate components (union-find),
  skipping pairs already joined and pairs of two numeric answers (the caller decides those exactly).  It
  streams one small message per operation, so the caller knows which operation is in flight.  The same
  algorithm (``_run_job``) runs in-process when no worker can be started.
* **Soft timeouts.**  Tasks run in the worker's main thread, where a timer (``signal.setitimer``, raising
  math-verify's own ``TimeoutException``) bounds each operation; with a group budget it is cut to what is left.
* **Parsing.**  Each string is parsed as ``math_verify.parse("\boxed{<string>}")`` with LaTeX extraction
  only (math-verify's plain-expression fallback would read unparsable text such as ``t(0, 4]`` as the stray
  number ``4``).
* **Speed-ups inside the worker, meant not to change results.**  LaTeX is parsed with ANTLR's SLL prediction
  first and re-parsed with full LL prediction only on a syntax error (ANTLR guarantees SLL gives the LL tree or
  an error; identical results on ~2,800 benchmark answers and rewrites).  math-verify's last and slowest
  stage, ``simplify(a - b) == 0``, is preceded by a numeric probe: if ``a - b`` is clearly non-zero at a
  generic sample point, no simplification can make it zero, so the stage answers False at once.  The worker
  also warms up sympy and the parser at start-up.
* **Signals.**  The worker ignores SIGINT, SIGTERM and SIGUSR1: a Ctrl-C, a scheduler's preemption warning or a
  launcher's forwarded SIGTERM is the caller's to handle (a worker dying of it would turn the comparison in flight
  into "not equivalent" and change that step's rewards); the worker exits when the caller closes its pipe.

The worker process imports this file and ``union_find.py`` by file name, without the ``empo`` package (the pool's
``_BOOT``), so it imports nothing else from ``empo``.  Test hooks: ``EMPO_MATH_TEST_HANG``, ``_CRASH``, ``_SLOW``."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

if __package__:  # empo.grading.mathverify_worker: the pool's in-process fallback
    from empo.grading.union_find import UnionFind
else:  # the worker process imports this folder's files by name (mathverify_pool._BOOT)
    from union_find import UnionFind

logger = logging.getLogger(__name__)


_PARSE_CACHE_SIZE = 16384


class _Job(UnionFind):
    """Union-find state of one group: strings, numeric flags, components, skipped pairs, poisoned strings."""

    __slots__ = ("strings", "numeric", "skip", "poison", "tcount", "results", "over_budget")

    def __init__(self, strings, numeric, parent=None, skip=(), poison=(), tcount=None):
        self.strings = list(strings)
        self.numeric = list(numeric)
        super().__init__(len(self.strings))
        if parent is not None:
            self.parent = list(parent)
        self.skip = set(map(tuple, skip))
        self.poison = set(poison)
        self.tcount = dict(tcount or {})
        self.results: list[tuple[int, int, bool, bool]] = []
        self.over_budget = False

    def timed_out(self) -> set[int]:
        """Strings with a timeout on record: now, or (poisoned) earlier in the run."""
        return {k for k, c in self.tcount.items() if c} | set(self.poison)

    def payload(self):
        return (self.strings, self.numeric, self.parent, sorted(self.skip), sorted(self.poison), self.tcount)

    def labels(self) -> list[int]:
        return [self.find(i) for i in range(len(self.strings))]

    def pairs(self):
        """Pairs still worth comparing, in a fixed order; evaluated lazily as components grow."""
        for j in range(1, len(self.strings)):
            yield from self.pairs_with(j)

    def pairs_with(self, j: int):
        """Pairs ``(i, j)``, ``i < j``, still worth comparing: all pairs among the first ``j + 1`` strings are
        settled before string ``j + 1`` is touched (callers sort strings short first, so a group budget cuts the
        long tail, not the ordinary answers)."""
        for i in range(j):
            if j in self.poison:
                return
            if i in self.poison or (self.numeric[i] and self.numeric[j]) or (i, j) in self.skip:
                continue
            if self.find(i) == self.find(j):
                continue
            yield i, j

    def apply(self, i: int, j: int, equal: bool, timed_out: bool) -> None:
        self.results.append((i, j, equal, timed_out))
        if equal:
            self.union(i, j)
        else:
            self.skip.add((i, j))
        if timed_out:
            ci, cj = self.tcount.get(i, 0), self.tcount.get(j, 0)
            blame = [i] if ci and not cj else [j] if cj and not ci else [i, j]
            for k in blame:
                self.tcount[k] = self.tcount.get(k, 0) + 1
                if self.tcount[k] >= 2:
                    self.poison.add(k)


def _run_job(job: _Job, send: Callable, timed: Callable, parse: Callable, equal: Callable,
             soft: float | None = None, budget: float | None = None) -> None:
    """Parse each string, then compare it with the earlier ones of separate components; ``send`` streams progress.

    ``budget`` (seconds, None: none) bounds the whole job: each operation's soft limit is cut to what is left,
    and an operation cut short by the budget (rather than by its own ``soft`` timeout) is not recorded -- it is
    nobody's fault -- and the job ends with ``("done", labels, True)``: what is still unresolved stays apart.
    """
    deadline = None if budget is None else time.monotonic() + budget

    def left() -> float | None:
        return None if deadline is None else deadline - time.monotonic()

    def cut_by_budget(limit: float | None) -> bool:
        return limit is not None and (soft is None or limit < soft) and left() <= 0.01

    def over_budget() -> None:
        job.over_budget = True
        send(("done", job.labels(), True))

    for j, s in enumerate(job.strings):  # string j is parsed, then compared with the strings before it
        if j not in job.poison:
            limit = left()
            if limit is not None and limit <= 0:
                return over_budget()
            send(("p", j))
            _, timed_out = timed(lambda s=s: parse(s), limit)
            if timed_out:
                if cut_by_budget(limit):
                    return over_budget()
                job.poison.add(j)
                send(("x", j))
        for i, _ in job.pairs_with(j):
            limit = left()
            if limit is not None and limit <= 0:
                return over_budget()
            send(("b", i, j))
            a, b = job.strings[i], job.strings[j]
            res, timed_out = timed(lambda a=a, b=b: equal(a, b), limit)
            if timed_out and cut_by_budget(limit):
                return over_budget()
            res = bool(res)
            job.apply(i, j, res, timed_out)
            send(("r", i, j, res, timed_out))
    send(("done", job.labels()))


_mv = None  # (parse, verify, TimeoutException, cached_parse)


def _load_mathverify():
    global _mv
    if _mv is None:
        from functools import lru_cache

        import math_verify
        import math_verify.grader
        import math_verify.parser
        from math_verify.errors import TimeoutException

        # we disable math-verify's own signal timeouts and supply ours; silence its one-time warning
        math_verify.parser.TIMEOUT_WARNING_SHOWN = True
        math_verify.grader.TIMEOUT_WARNING_SHOWN = True
        if _IN_WORKER:
            logging.getLogger("math_verify").setLevel(logging.ERROR)
            logging.getLogger("latex2sympy2_extended").setLevel(logging.ERROR)
            _install_probe(math_verify.grader)
            _install_two_stage_parsing()

        latex_only = [math_verify.LatexExtractionConfig()]

        @lru_cache(maxsize=_PARSE_CACHE_SIZE)
        def cached_parse(s: str):
            # LaTeX extraction only: the default plain-expression fallback pulls a stray number out of text it
            # cannot parse ("t(0, 4]" -> 4), which would make such answers equal to that number.
            return math_verify.parse("\\boxed{" + s + "}", extraction_config=latex_only, parsing_timeout=None)

        _mv = (math_verify.parse, math_verify.verify, TimeoutException, cached_parse)
    return _mv


# Test-only fault injection (read by the worker at start-up): parsing exactly this string blocks the soft
# timer and sleeps (like C code that cannot be interrupted), or kills the worker.  Used by the test suite to
# exercise the caller's hard timeout and crash recovery.
_TEST_HANG = os.environ.get("EMPO_MATH_TEST_HANG")


_TEST_CRASH = os.environ.get("EMPO_MATH_TEST_CRASH")


# ... and comparing any string that contains this marker sleeps until the soft timer interrupts it (a slow but
# interruptible answer, like a deep expression sympy grinds on): exercises timeouts and the group budget.
_TEST_SLOW = os.environ.get("EMPO_MATH_TEST_SLOW")


_IN_WORKER = False


# Real, positive, "generic" sample values for the numeric probe (latex2sympy's symbols are real).
_SAMPLES = (1.3718, 0.6127, 2.2391, 1.7903, 0.8311, 3.1177, 1.1489, 2.6653)


def _install_probe(grader) -> None:
    """Put a numeric probe in front of math-verify's last and slowest stage, ``simplify(a - b) == 0``.

    ``a - b`` is evaluated (30 digits) at two fixed generic points.  If it is clearly non-zero at either
    (relative difference > 1e-6), no simplification can turn it into 0, so the stage answers False without
    calling ``simplify``; otherwise (zero, not a number, an error) math-verify's own check runs unchanged.
    This only skips work that would end in False: it makes non-equivalent symbolic answers cheap.
    Installed in the worker process only.
    """
    original = grader.sympy_symbolic_eq
    if getattr(original, "_empo_probe", False):
        return
    from sympy import Expr

    def clearly_different(a, b) -> bool:
        try:
            if not isinstance(a, Expr) or not isinstance(b, Expr):
                return False
            symbols = sorted((a - b).free_symbols, key=str)
            for shift in (0, 3):
                subs = {sym: _SAMPLES[(k + shift) % len(_SAMPLES)] for k, sym in enumerate(symbols)}
                va, vb = a.evalf(30, subs=subs), b.evalf(30, subs=subs)
                if not (va.is_number and vb.is_number) or va.free_symbols or vb.free_symbols:
                    return False
                x, y = complex(va), complex(vb)
                if any(v != v or abs(v) == float("inf") for v in (x.real, x.imag, y.real, y.imag)):
                    continue
                if abs(x - y) > 1e-6 * (1.0 + abs(x) + abs(y)):
                    return True
        except Exception:  # noqa: BLE001 - the probe is only a shortcut
            return False
        return False

    def symbolic_eq(a, b):
        if clearly_different(a, b):
            return False
        return original(a, b)

    symbolic_eq._empo_probe = True  # type: ignore[attr-defined]
    grader.sympy_symbolic_eq = symbolic_eq


def _install_two_stage_parsing() -> None:
    """Parse LaTeX with ANTLR's fast SLL prediction first, and with the full LL prediction only on an error.

    ANTLR guarantees that SLL prediction yields the same parse tree as LL or reports a syntax error (which
    latex2sympy's error listener turns into an exception, and we then re-parse in LL mode), so the results are
    unchanged; only the time differs.  (Checked on ~2,800 benchmark answers and rewrites: identical.)
    Installed in the worker process only.
    """
    try:
        from antlr4.atn.PredictionMode import PredictionMode
        from latex2sympy2_extended import latex2sympy2 as l2s
    except ImportError:
        return
    cls = l2s._Latex2Sympy
    if getattr(cls, "_empo_two_stage", False) or not hasattr(cls, "create_parser") or not hasattr(cls, "parse"):
        return
    create_parser, parse = cls.create_parser, cls.parse

    def create_parser_sll(self, latex_str):
        parser = create_parser(self, latex_str)
        if getattr(self, "_empo_sll", False):
            parser._interp.predictionMode = PredictionMode.SLL
        return parser

    def parse_two_stage(self, latex_str):
        self._empo_sll = True
        try:
            return parse(self, latex_str)
        except Exception:  # noqa: BLE001 - a syntax error under SLL: retry with full LL prediction
            self._empo_sll = False
            return parse(self, latex_str)

    cls.create_parser = create_parser_sll
    cls.parse = parse_two_stage
    cls._empo_two_stage = True


def _mv_parse(s: str):
    if _IN_WORKER and _TEST_HANG is not None and s == _TEST_HANG:
        import signal
        import time

        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(3600)
    if _IN_WORKER and _TEST_CRASH is not None and s == _TEST_CRASH:
        os._exit(3)
    return _load_mathverify()[3](s)


def _mv_equal(a: str, b: str) -> bool:
    """math-verify in both directions on the parsed answers (``verify`` alone is asymmetric)."""
    if _IN_WORKER and _TEST_SLOW and (_TEST_SLOW in a or _TEST_SLOW in b):
        time.sleep(3600)
    _, verify, _, cached_parse = _load_mathverify()
    pa, pb = cached_parse(a), cached_parse(b)
    if not pa or not pb:
        return False
    return bool(verify(pa, pb, timeout_seconds=None)) and bool(verify(pb, pa, timeout_seconds=None))


_fired = False


def _alarm_handler(signum, frame):
    global _fired
    _fired = True
    raise _load_mathverify()[2]("empo: math-verify soft timeout")


def _make_timed(soft: float | None):
    """``timed(fn) -> (result, timed_out)`` with a ``setitimer`` soft timeout (main thread only)."""
    import signal

    timeout_exc = _load_mathverify()[2]

    def timed(fn, limit: float | None = None):
        """``limit`` (the group's remaining budget) cuts the soft timeout further."""
        global _fired
        _fired = False
        result = None
        seconds = soft if limit is None else (min(soft, limit) if soft else limit)
        try:
            try:
                if seconds:
                    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
                result = fn()
            finally:
                if seconds:
                    signal.setitimer(signal.ITIMER_REAL, 0)
        except timeout_exc:
            pass
        except Exception:  # noqa: BLE001 - a failed parse/compare is "not equivalent"
            logger.debug("math-verify raised", exc_info=True)
        return result, bool(_fired and not result)

    return timed


_WARM_UP = [
    "1", "0.5", r"\frac{\sqrt{3}}{2}", r"(1, 2)", r"[1, 2]", r"\{1, 2\}", r"x^2+1", r"e^{-at}\sin(t)",
    r"\frac{1}{b-a}(e^{-at}-e^{-bt})", r"y=2x+3", r"(0, 0), (1, \frac{5}{2})", r"\begin{pmatrix}1&0\\0&1\end{pmatrix}",
    r"\text{yes}", r"2\pi", r"\log_{2}n", r"f(x)=x-1", r"\lfloor\frac{2n}{3}\rfloor+1",
]


def _warm_up() -> None:
    """Pay sympy's and the LaTeX parser's lazy first-use costs at start-up rather than in the first task."""
    timed = _make_timed(10.0)
    for s in _WARM_UP:
        timed(lambda s=s: _mv_parse(s))
    for a, b in [(_WARM_UP[2], _WARM_UP[1]), (_WARM_UP[3], _WARM_UP[4]), (_WARM_UP[6], _WARM_UP[0]),
                 (_WARM_UP[7], _WARM_UP[8]), (_WARM_UP[9], _WARM_UP[6]), (_WARM_UP[10], _WARM_UP[3])]:
        timed(lambda a=a, b=b: _mv_equal(a, b))


def worker_main(argv: list[str]) -> None:
    """Entry point of the worker (``argv``: ``[-c, this_file, read_fd, write_fd]``)."""
    import signal
    from multiprocessing.connection import Connection

    global _IN_WORKER
    _IN_WORKER = True
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):  # the caller's to handle; it closes the pipe
        signal.signal(sig, signal.SIG_IGN)
    rx = Connection(int(argv[2]), writable=False)
    tx = Connection(int(argv[3]), readable=False)
    _load_mathverify()
    signal.signal(signal.SIGALRM, _alarm_handler)
    _warm_up()
    tx.send(("ready", os.getpid()))
    while True:
        try:
            msg = rx.recv()
        except (EOFError, OSError):
            break
        if not msg or msg[0] == "exit":
            break
        if msg[0] == "job":
            _, payload, soft, budget = msg
            job = _Job(*payload)
            try:
                _run_job(job, tx.send, _make_timed(soft), _mv_parse, _mv_equal, soft, budget)
            except (BrokenPipeError, OSError):
                break
