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
* **Fallback.**  On non-POSIX systems, with ``EMPO_MATH_INPROCESS=1``, or if no worker can be started, the same
  algorithm runs in-process; the soft timer is used only on the main thread (elsewhere there is no timeout).

Configuration: ``DEFAULT_TIMEOUT`` seconds per operation (environment ``EMPO_MATH_TIMEOUT``, default 5), or a
``timeout`` argument.  ``EMPO_MATH_DEBUG=1`` lets the worker write to stderr.

The worker's side -- the group algorithm, the math-verify calls and their timers -- is
:mod:`empo.grading.mathverify_worker`; this module is the caller's side: the pool, the hard timeouts and the cache
of decided pairs."""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import sys
import threading
import time
from collections import OrderedDict

from empo.grading.mathverify_worker import (
    _alarm_handler,
    _Job,
    _make_timed,
    _mv_equal,
    _mv_parse,
    _run_job,
)

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


_CALLER_CACHE_SIZE = 100_000


def default_timeout() -> float:
    return DEFAULT_TIMEOUT


def _hard_limit(soft: float) -> float:
    return soft + max(2.0, 0.5 * soft)


# The worker imports the worker module and the union-find by file name from this folder (appended last to its path,
# so nothing of the caller's working directory or of this folder shadows a library), not through the empo package.
_BOOT = ("import sys, os; del sys.path[0]; sys.path.append(os.path.dirname(sys.argv[1])); "
         "import mathverify_worker; mathverify_worker.worker_main(sys.argv)")
WORKER_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mathverify_worker.py")


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
                [sys.executable, "-c", _BOOT, WORKER_FILE, str(p2c_r), str(c2p_w)],
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
        for i, j, res, _ in job.results:
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
