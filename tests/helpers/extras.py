"""Which optional extras this environment has. Tests that need one skip without it, except where the environment
requires it (CI sets EMPO_REQUIRE_VLLM=1 and EMPO_REQUIRE_DEEPSPEED=1 after installing those extras, so a broken
install fails loudly)."""

import importlib.util
import os

import pytest

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
REQUIRE_VLLM = bool(os.environ.get("EMPO_REQUIRE_VLLM"))
needs_vllm = pytest.mark.skipif(not HAVE_VLLM and not REQUIRE_VLLM,
                                reason="vLLM extra not installed (scripts/install_vllm_cpu.sh)")

HAVE_DEEPSPEED = importlib.util.find_spec("deepspeed") is not None


def needs_deepspeed() -> None:
    """Skip the calling test without the deepspeed extra, unless EMPO_REQUIRE_DEEPSPEED is set (then it runs, and
    fails)."""
    if not HAVE_DEEPSPEED and not os.environ.get("EMPO_REQUIRE_DEEPSPEED"):
        pytest.skip("deepspeed extra not installed (pip install -e '.[deepspeed]')")
