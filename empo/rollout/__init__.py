"""Sampling G completions per question: the HF ``generate`` backend, the vLLM offline engine, and ``empo rollout``."""
