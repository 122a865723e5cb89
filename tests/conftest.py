import sys
from pathlib import Path

import pytest

# Test doubles and the scripts some tests run in other processes (torchrun, accelerate) live in tests/helpers/.
sys.path.insert(0, str(Path(__file__).resolve().parent / "helpers"))

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


@pytest.fixture(scope="session")
def tiny(tmp_path_factory, default_model_path) -> str:
    """A 2-layer, 32-wide random Llama with the default model's tokenizer (seeded, built once): fast training and
    sampling for the tests that need a real model but not a good one. Tests read it; none writes into it."""
    from scripted import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny"), default_model_path)
