"""empo: label-free RL post-training of LLM reasoning (EMPO) on top of TRL.

Stages: rollout -> answers -> clustering -> entropy filter -> rewards -> GRPO trainer -> eval -> compare.
"""

__version__ = "0.1.0"
