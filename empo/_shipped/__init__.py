"""The repository folders that ship inside the package (see empo.resources).

``pyproject.toml`` maps ``recipes/`` to ``empo._shipped.recipes``, ``eval/suites/`` to ``empo._shipped.suites`` and
``data/`` to ``empo._shipped.data``: the files stay where a reader of the repository expects them (the open-r1
layout), and a wheel carries them. Each mapped folder holds an ``__init__.py`` only so that an editable install
can import it.
"""
