"""math-verify in a worker process, with timeouts that work from any thread.

math-verify's own timeouts use ``signal.alarm`` and fail off the main thread (TRL reward functions, thread
pools).  Here every ``math_verify.parse``/``math_verify.verify`` call runs in a separate worker process:

* **Worker.**  A plain ``python -c`` subprocess (started with :mod:`subprocess`, not :mod:`multiprocessing`, so
  the caller's ``__main__`` is never re-imported and nothing is forked from a process that may hold CUDA
  state or threads).  It talks over two pipes with :class:`multiprocessing.connection.Connection` framing.
  Tasks run in the worker's main thread, where a *soft* timer (``signal.setitimer``, raising math-verify's
  own ``TimeoutException``) bounds each operation.  Parsed answers are cached in the worker (LRU by string).
* **One task per group.**  The caller sends all distinct strings of a group at once; the worker takes them in
  order, parsing each and comparing it with the earlier strings of still-separate components (union-find),
  skipping pairs already joined and pairs of two numeric answers (the caller decides those exactly).  It
  streams one small message per operation, so the caller knows which operation is in flight.
* **Group budget.**  With ``budget`` seconds, the whole task stops when they run out: the soft timer of each
  operation is cut to what is left, an operation cut that way blames nobody (it is not cached, counted or
  poisoning), and the caller stops waiting ``0.5`` s past the deadline (killing a worker stuck in C code).
  What was not compared stays apart.  Strings come short first (:mod:`empo.clustering.math_clusters` sorts them), so the
  ordinary answers are settled before a long pathological one is touched.  Starting a fresh worker (after a
  kill) is not counted in the budget.
* **Hard timeout in the caller.**  The caller waits at most ``timeout + max(2, timeout / 2)`` seconds for each
  message.  When the worker overruns (C code the soft timer cannot interrupt) or dies, it is killed, the
  in-flight operation is recorded as failed (parse failure or "not equivalent"), and the task resumes on a
  fresh worker from where it stopped.  One pathological answer therefore costs at most a couple of timeouts.
* **Timeouts mean "not equivalent".**  An answer that times out against two different partners is *poisoned*:
  it is compared with nothing else in that group and in later calls (it stays equivalent to answers with the
  same canonical form, which never reach this module).  When a pair times out and only one side already has a
  timeout on record, only that side is blamed, so an innocent answer is not poisoned by two bad ones.
* **Thread safety.**  Workers are handed out by a small pool (``EMPO_MATH_WORKERS``, default 1) under a
  condition variable; any number of threads may call in.  After a fork the child starts its own workers (and
  gets fresh locks).  An ``atexit`` hook closes the workers.
* **Parsing.**  Each string is parsed as ``math_verify.parse("\\boxed{<string>}")`` with LaTeX extraction
  only (math-verify's plain-expression fallback would read unparsable text such as ``t(0, 4]`` as the stray
  number ``4``).
* **Speed-ups inside the worker, meant not to change results.**  LaTeX is parsed with ANTLR's SLL prediction
  first and re-parsed with full LL prediction only on a syntax error (ANTLR guarantees SLL gives the LL tree or
  an error; identical results on ~2,800 benchmark answers and rewrites).  math-verify's last and slowest
  stage, ``simplify(a - b) == 0``, is preceded by a numeric probe: if ``a - b`` is clearly non-zero at a
  generic sample point, no simplification can make it zero, so the stage answers False at once.  The worker
  also warms up sympy and the parser at start-up.
* **Fallback.**  On non-POSIX systems, with ``EMPO_MATH_INPROCESS=1``, or if no worker can be started, the same
  algorithm runs in-process; the soft timer is used only on the main thread (elsewhere there is no timeout).

Configuration: ``DEFAULT_TIMEOUT`` seconds per operation (environment ``EMPO_MATH_TIMEOUT``, default 5), or a
``timeout`` argument.  ``EMPO_MATH_DEBUG=1`` lets the worker write to stderr.

This file must stay importable on its own (the worker loads it by path, without importing the ``empo``
package), so it imports nothing from ``empo``.
"""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from typing import Callable

__all__ = [
    "DEFAULT_TIMEOUT",
    "UnionFind",
    "default_timeout",
    "mathverify_cluster",
    "mathverify_equivalent",
    "shutdown",
    "worker_main",
]

logger = logging.getLogger(__name__)


def _env_float(name: str, default: float) -> float:
    try:
        v = float(os.environ.get(name, default))
        return v if v > 0 else default
    except ValueError:
        return default


#: Seconds per math-verify operation (one parse, or one two-way comparison).
DEFAULT_TIMEOUT: float = _env_float("EMPO_MATH_TIMEOUT", 5.0)
#: Seconds to wait for a fresh worker to import sympy and math-verify.
STARTUP_TIMEOUT: float = 120.0
_PARSE_CACHE_SIZE = 16384
_CALLER_CACHE_SIZE = 100_000


def default_timeout() -> float:
    return DEFAULT_TIMEOUT


def _hard_limit(soft: float) -> float:
    return soft + max(2.0, 0.5 * soft)


# --------------------------------------------------------------------------------------------------
# The group algorithm, shared by the worker, the caller's mirror of it, and the in-process fallback
# --------------------------------------------------------------------------------------------------


class UnionFind:
    """Disjoint sets over 0..n-1; a component's root is its smallest member (also used by empo.clustering.math_clusters)."""

    __slots__ = ("parent",)

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        p = self.parent
        while p[i] != i:
            p[i] = p[p[i]]
            i = p[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)


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
            _, timed_out = timed(lambda: parse(s), limit)
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
            res, timed_out = timed(lambda: equal(a, b), limit)
            if timed_out and cut_by_budget(limit):
                return over_budget()
            res = bool(res)
            job.apply(i, j, res, timed_out)
            send(("r", i, j, res, timed_out))
    send(("done", job.labels()))


# --------------------------------------------------------------------------------------------------
# math-verify calls (worker side, or in-process fallback)
# --------------------------------------------------------------------------------------------------

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
        timed(lambda: _mv_parse(s))
    for a, b in [(_WARM_UP[2], _WARM_UP[1]), (_WARM_UP[3], _WARM_UP[4]), (_WARM_UP[6], _WARM_UP[0]),
                 (_WARM_UP[7], _WARM_UP[8]), (_WARM_UP[9], _WARM_UP[6]), (_WARM_UP[10], _WARM_UP[3])]:
        timed(lambda: _mv_equal(a, b))


# --------------------------------------------------------------------------------------------------
# Worker process
# --------------------------------------------------------------------------------------------------


def worker_main(argv: list[str]) -> None:
    """Entry point of the worker (``argv``: ``[-c, this_file, read_fd, write_fd]``)."""
    import signal
    from multiprocessing.connection import Connection

    global _IN_WORKER
    _IN_WORKER = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's business; it closes the pipe
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


_BOOT = (
    "import sys; del sys.path[0]; import importlib.util as u; "
    "s = u.spec_from_file_location('_empo_mathverify_worker', sys.argv[1]); m = u.module_from_spec(s); "
    "sys.modules[s.name] = m; s.loader.exec_module(m); m.worker_main(sys.argv)"
)


class _Worker:
    def __init__(self) -> None:
        from multiprocessing.connection import Connection

        if not sys.executable:
            raise RuntimeError("no Python executable to start a math-verify worker")
        p2c_r, p2c_w = os.pipe()
        c2p_r, c2p_w = os.pipe()
        debug = os.environ.get("EMPO_MATH_DEBUG", "") not in ("", "0")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, os.path.abspath(__file__), str(p2c_r), str(c2p_w)],
                pass_fds=(p2c_r, c2p_w),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=None if debug else subprocess.DEVNULL,
                close_fds=True,
            )
        except BaseException:
            for fd in (p2c_r, p2c_w, c2p_r, c2p_w):
                os.close(fd)
            raise
        os.close(p2c_r)
        os.close(c2p_w)
        self.tx = Connection(p2c_w, readable=False)
        self.rx = Connection(c2p_r, writable=False)
        try:
            if not self.rx.poll(STARTUP_TIMEOUT):
                raise RuntimeError("math-verify worker did not start")
            msg = self.rx.recv()
            if msg[0] != "ready":
                raise RuntimeError(f"math-verify worker said {msg!r}")
        except BaseException:
            self.kill()
            raise

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None and not self.rx.closed

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=10)
        except Exception:  # noqa: BLE001
            pass
        self._close_pipes()

    def close(self) -> None:
        try:
            self.tx.send(("exit",))
            self.proc.wait(timeout=2)
        except Exception:  # noqa: BLE001
            self.kill()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for c in (self.tx, self.rx):
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass


class _Pool:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._count = 0
        self._pid = os.getpid()
        self._atexit = False

    @staticmethod
    def size() -> int:
        try:
            return max(1, int(os.environ.get("EMPO_MATH_WORKERS", "1")))
        except ValueError:
            return 1

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:  # a forked child: the workers belong to the parent; start afresh
            self._idle, self._count, self._pid, self._atexit = [], 0, os.getpid(), False

    def acquire(self) -> _Worker:
        with self._cond:
            self._check_fork()
            while True:
                while self._idle:
                    w = self._idle.pop()
                    if w.alive:
                        return w
                    self._count -= 1
                    w.kill()
                if self._count < self.size():
                    self._count += 1
                    if not self._atexit:
                        atexit.register(self.shutdown)
                        self._atexit = True
                    break
                self._cond.wait()
        try:
            return _Worker()
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def release(self, w: _Worker) -> None:
        with self._cond:
            if os.getpid() != self._pid:
                return
            if w.alive:
                self._idle.append(w)
            else:
                self._count -= 1
            self._cond.notify()

    def shutdown(self) -> None:
        with self._cond:
            if os.getpid() != self._pid:
                return
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        for w in idle:
            w.close()


_POOL = _Pool()
_remote_disabled = os.name != "posix" or os.environ.get("EMPO_MATH_INPROCESS", "") not in ("", "0")
_warned_fallback = False


def shutdown() -> None:
    """Close the idle math-verify workers (a later call starts new ones)."""
    _POOL.shutdown()


#: Seconds the caller waits past a group's deadline for the worker to report that it stopped.
_BUDGET_GRACE = 0.5
_OVER_BUDGET = "over budget"


def _drive(w: _Worker, job: _Job, soft: float, deadline: float | None = None) -> bool | str | None:
    """Run ``job`` on worker ``w``, mirroring its progress.

    True when done; False when the worker overran or died during an operation (now blamed); None when it
    failed before any operation started; ``_OVER_BUDGET`` when the group's deadline passed (the worker is then
    stuck past it and must be killed; the operation in flight is not blamed).
    """
    hard = _hard_limit(soft)
    inflight = None
    try:
        budget = None if deadline is None else max(0.0, deadline - time.monotonic())
        w.tx.send(("job", job.payload(), soft, budget))
        while True:
            wait = hard if deadline is None else min(hard, max(0.0, deadline - time.monotonic()) + _BUDGET_GRACE)
            if not w.rx.poll(wait):
                if deadline is not None and time.monotonic() >= deadline:
                    job.over_budget = True
                    return _OVER_BUDGET
                break
            msg = w.rx.recv()
            kind = msg[0]
            if kind == "p":
                inflight = msg
            elif kind == "b":
                inflight = msg
            elif kind == "x":
                job.poison.add(msg[1])
                inflight = None
            elif kind == "r":
                _, i, j, res, timed_out = msg
                job.apply(i, j, res, timed_out)
                inflight = None
            elif kind == "done":
                job.parent = list(msg[1])
                job.over_budget = len(msg) > 2 and bool(msg[2])
                return True
    except (EOFError, OSError):
        pass
    # hard timeout or crash: blame the operation in flight so that the retry makes progress
    if inflight is None:
        return None
    if inflight[0] == "p":
        job.poison.add(inflight[1])
    else:
        job.apply(inflight[1], inflight[2], False, True)
    logger.warning("math-verify worker overran its hard timeout or died; restarting it")
    return False


def _run_remote(job: _Job, soft: float, deadline: float | None = None) -> None:
    idle_failures = 0
    while True:  # every failure inside an operation blames that operation, so this terminates
        if deadline is not None and time.monotonic() >= deadline:
            job.over_budget = True  # spent on a worker that had to be killed: what is left stays apart
            return
        w = _POOL.acquire()
        ok = None
        try:
            ok = _drive(w, job, soft, deadline)
        finally:
            if ok is not True:
                w.kill()
            _POOL.release(w)
        if ok is True or ok == _OVER_BUDGET:
            return
        if ok is None:  # the worker died outside any operation (killed while idle?): retry once, then give up
            idle_failures += 1
            if idle_failures >= 2:
                raise RuntimeError("math-verify worker keeps failing outside any operation")


def _run_local(job: _Job, soft: float, deadline: float | None = None) -> None:
    budget = None if deadline is None else max(0.0, deadline - time.monotonic())
    on_main = threading.current_thread() is threading.main_thread()
    if on_main:
        import signal

        old = signal.signal(signal.SIGALRM, _alarm_handler)
        try:
            _run_job(job, lambda msg: None, _make_timed(soft), _mv_parse, _mv_equal, soft, budget)
        finally:
            signal.signal(signal.SIGALRM, old)
    else:  # no timer off the main thread: the budget is checked between operations only
        untimed = _make_timed(None)
        _run_job(job, lambda msg: None, lambda fn, limit=None: untimed(fn), _mv_parse, _mv_equal, None, budget)


# --------------------------------------------------------------------------------------------------
# Caller-side caches and the public entry points
# --------------------------------------------------------------------------------------------------

_cache_lock = threading.Lock()
_pair_cache: OrderedDict[tuple[str, str], bool] = OrderedDict()
_poisoned: OrderedDict[str, None] = OrderedDict()


def _after_fork_in_child() -> None:
    """A forked child must not share the parent's workers or inherit a lock held by another thread."""
    global _cache_lock, _POOL
    _cache_lock = threading.Lock()
    _POOL = _Pool()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _lru_put(d: OrderedDict, key, value) -> None:
    d[key] = value
    d.move_to_end(key)
    if len(d) > _CALLER_CACHE_SIZE:
        d.popitem(last=False)


def mathverify_cluster(strings: list[str], numeric: list[bool] | None = None, timeout: float | None = None,
                       budget: float | None = None, report: dict | None = None) -> list[int]:
    """Component label (smallest member index) of each string under two-way math-verify equivalence.

    ``strings`` should be distinct canonical forms; pairs of two ``numeric`` entries are never compared (the
    caller decides those exactly).  Comparisons that time out, and strings that fail or time out in parsing,
    count as "not equivalent".  ``budget`` (seconds) bounds the whole group, not counting the start of a
    fresh worker: when it runs out, pairs not yet compared stay apart.  ``report`` (a dict) receives
    ``over_budget`` (bool) and ``timed_out`` (indices of strings with a timeout on record, now or earlier).
    """
    global _warned_fallback
    n = len(strings)
    numeric = list(numeric) if numeric is not None else [False] * n
    soft = float(timeout) if timeout else DEFAULT_TIMEOUT
    job = _Job(strings, numeric)
    with _cache_lock:
        for i, s in enumerate(strings):
            if s in _poisoned:
                job.poison.add(i)
        for i in range(n):
            for j in range(i + 1, n):
                if numeric[i] and numeric[j]:
                    continue
                known = _pair_cache.get((strings[i], strings[j]))
                if known is None:
                    known = _pair_cache.get((strings[j], strings[i]))
                if known is True:
                    job.union(i, j)
                elif known is False:
                    job.skip.add((i, j))
    if report is not None:
        report.update(over_budget=False, timed_out=job.timed_out())
    if n < 2 or next(job.pairs(), None) is None:
        return job.labels()

    deadline = time.monotonic() + budget if budget else None
    if not _remote_disabled:
        try:
            _run_remote(job, soft, deadline)
        except Exception as e:  # noqa: BLE001 - no worker could run: fall back rather than fail the caller
            if not _warned_fallback:
                logger.warning("math-verify worker unavailable (%s); comparing in-process", e)
                _warned_fallback = True
            _run_local(job, soft, deadline)
    else:
        _run_local(job, soft, deadline)
    if report is not None:
        report.update(over_budget=job.over_budget, timed_out=job.timed_out())

    with _cache_lock:
        for i, j, res, timed_out in job.results:
            key = (strings[i], strings[j]) if strings[i] <= strings[j] else (strings[j], strings[i])
            _lru_put(_pair_cache, key, res)
        for i in job.poison:
            _lru_put(_poisoned, strings[i], None)
    return job.labels()


def mathverify_equivalent(a: str, b: str, timeout: float | None = None) -> bool:
    """Two-way math-verify equivalence of two canonical strings, under the worker's timeouts."""
    if a == b:
        return True
    labels = mathverify_cluster([a, b], [False, False], timeout=timeout)
    return labels[0] == labels[1]
