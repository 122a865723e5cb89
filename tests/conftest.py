from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data (benchmark files for tests) is not beside the project")
    return SHARED_DATA


@pytest.fixture(scope="session")
def default_model_path() -> str:
    """The embedded default model, converted once into $EMPO_HOME (the README's first command does this)."""
    from empo.model import DEFAULT_MODEL, resolve_model_path

    return resolve_model_path(DEFAULT_MODEL)
