"""Small file helpers: atomic writes and append-only JSONL, so a killed run never leaves a torn file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from empo.errors import DataError, DirectoryLockedError


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def read_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Yield the rows of a JSONL file; a torn last line (a run killed mid-write) is skipped."""
    path = Path(path)
    with path.open(encoding="utf-8") as f:
        lines = f.readlines()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as e:
            if lineno == len(lines) and not line.endswith("\n"):
                return  # torn tail of an interrupted append: the row will be redone
            raise DataError(f"{path}: line {lineno} is not valid JSON ({e.msg})") from None


def cut_jsonl(path: str | os.PathLike, keep: Callable[[dict], bool]) -> int:
    """Keep the rows of a JSONL file for which ``keep`` is true (atomically); the others are appended to
    ``<stem>.superseded.jsonl`` beside it, so nothing is lost. Returns how many rows moved."""
    path = Path(path)
    if not path.exists():
        return 0
    rows = list(read_jsonl(path))
    gone = [r for r in rows if not keep(r)]
    if not gone:
        return 0
    with JsonlAppender(path.with_name(path.stem + ".superseded.jsonl")) as superseded:
        superseded.write_many(gone)
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows if keep(r)))
    return len(gone)


class JsonlAppender:
    """Append rows to a JSONL file, one flushed line per row (whole lines survive a kill)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_torn_tail()
        self._file = self.path.open("a", encoding="utf-8")

    def _repair_torn_tail(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        data = self.path.read_bytes()
        if not data.endswith(b"\n"):
            # Drop the partial row an interrupted run left behind so the next append starts on a clean line.
            self.path.write_bytes(data[: data.rfind(b"\n") + 1])

    def write(self, row: dict) -> None:
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()

    def write_many(self, rows: Iterable[dict]) -> None:
        for row in rows:
            self.write(row)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class DirectoryLock:
    """One writer per directory: an exclusive ``fcntl.flock`` on ``<dir>/.empo.lock``, which holds the owner's pid.

    The kernel drops a flock when its process dies (even by SIGKILL), so a lock left by a killed run never blocks
    the next one; the file itself stays behind and is reused. The pid in it only names the holder in the refusal.
    """

    FILENAME = ".empo.lock"

    def __init__(self, directory: str | os.PathLike, what: str = "run"):
        self.directory = Path(directory)
        self.path = self.directory / self.FILENAME
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> DirectoryLock:
        import fcntl

        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = self._holder(fd)
            os.close(fd)
            raise DirectoryLockedError(
                f"{self.directory} is in use by another {self.what} (pid {holder}); wait for it to finish, "
                "stop it, or use another output directory") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    @staticmethod
    def _holder(fd: int) -> str:
        import time

        for _ in range(20):  # the holder writes its pid right after locking; give it a moment
            os.lseek(fd, 0, os.SEEK_SET)
            text = os.read(fd, 64).decode(errors="replace").strip()
            if text:
                return text
            time.sleep(0.05)
        return "unknown"

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def is_main_launcher_process() -> bool:
    """True unless torchrun/accelerate started this process as a non-zero rank (they set RANK / LOCAL_RANK)."""
    for var in ("RANK", "LOCAL_RANK"):
        value = os.environ.get(var)
        if value not in (None, "", "0", "-1"):
            return False
    return True


def read_yaml(path: str | os.PathLike, what: str) -> Any:
    """Parse a YAML file; a missing, unreadable or malformed file is one :class:`~empo.errors.ConfigError` line."""
    import yaml

    from empo.errors import ConfigError

    path = Path(path).expanduser()
    if not path.exists():
        raise ConfigError(f"{what} '{path}' does not exist")
    if not path.is_file():
        raise ConfigError(f"{what} '{path}' is not a file")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{what} '{path}' cannot be read ({e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{what} '{path}' is not valid YAML{where}: {problem}") from None
