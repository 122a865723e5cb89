"""The project's own error types: bad input or state that the user can fix.

``empo.cli.main`` prints any of them (and ``ValueError``, the convention of the older modules) as one line,
``empo <command>: error: <message> (EMPO_DEBUG=1 shows the traceback)``, and exits with status 2.
"""

from __future__ import annotations


class EmpoError(Exception):
    """Base class: a message meant for the user, one line, naming what is wrong and how to go on."""


class ConfigError(EmpoError, ValueError):
    """A recipe, sweep spec or flag that cannot be used as given."""


class RunDirectoryError(EmpoError):
    """An output directory that holds another run's results."""
