"""Answers and their grading: extraction of the final answer, canonical forms and the equivalence rule,
math-verify in a worker process with timeouts that work off the main thread."""
