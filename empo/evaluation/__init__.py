"""``empo eval``: benchmarks and their gold rules, the evaluation loop, pass@k / maj@k and intervals."""
