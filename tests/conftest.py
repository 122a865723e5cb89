from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_data() -> Path:
    """The repository's data/ (benchmarks and training prompts, committed; data/manifest.json)."""
    return ROOT / "data"


@pytest.fixture(scope="session")
def default_model_path() -> str:
    """The embedded default model, converted once into $EMPO_HOME (the README's first command does this)."""
    from empo.model import DEFAULT_MODEL, resolve_model_path

    return resolve_model_path(DEFAULT_MODEL)
