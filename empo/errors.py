"""The project's errors: one tree, one place, and the one function that turns them into a line for the user.

Every error a user can fix by changing an input or a setting is an :class:`EmpoError`; its message is one line that
names what is wrong (the recipe key, the dataset field, the file) and how to go on. ``report_errors`` (used by every
``empo`` subcommand and by ``python -m empo.train``) prints it as ``empo <command>: error: <message>`` and returns
exit status 2. Any other exception is a bug and keeps its traceback. ``EMPO_DEBUG=1`` re-raises every error.

The kinds that subclass ``ValueError`` or ``ImportError`` as well do so because Python code outside the CLI (a
dataclass ``__post_init__`` under ``HfArgumentParser``, an ``import`` guard) expects those types.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable


class EmpoError(Exception):
    """Base class: a message meant for the user, one line, naming what is wrong and how to go on."""


class ConfigError(EmpoError, ValueError):
    """A recipe, a command-line flag, a sweep spec, an eval suite or a prompt file that cannot be used as given."""


class PlanError(ConfigError):
    """A recipe that cannot run on the GPUs it is launched on (``empo launch``)."""


class PreflightError(EmpoError):
    """A machine that cannot run the planned launch: a missing integration, a version outside the supported sets,
    too few GPUs or too little GPU memory, no compiler, an unreadable dataset (``empo launch``'s preflight)."""


class DataError(EmpoError, ValueError):
    """A dataset or benchmark file that does not fit the mapping it was given (the file, the row and the field)."""


class ModelResolutionError(EmpoError, RuntimeError):
    """A model spec that cannot be turned into a loadable checkpoint."""


class RunDirectoryError(EmpoError):
    """An output directory that holds another run's (or eval's) results."""


class DirectoryLockedError(RunDirectoryError):
    """Another live process writes to this directory."""


class CheckpointError(EmpoError):
    """A checkpoint that cannot be written (a full disk) or read back."""


class CompareError(EmpoError, ValueError):
    """Runs that cannot be compared as asked."""


class MissingExtraError(EmpoError, ImportError):
    """An optional dependency (an extra of the package) that the command needs is not installed."""


def report_errors(command: str, run: Callable[[], int]) -> int:
    """Run ``run()``; an :class:`EmpoError` becomes one line on stderr and exit status 2."""
    try:
        return run()
    except EmpoError as e:
        if os.environ.get("EMPO_DEBUG"):
            raise
        message = " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__
        print(f"empo {command}: error: {message} (EMPO_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 2
