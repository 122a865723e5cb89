"""Everything private of TRL and transformers that empo overrides, calls or reads, with the parameters empo was
written against (TRL 1.16.0, transformers 5.19): the surface a TRL upgrade can break. ``check_surface()`` returns one
line per difference, naming the method; ``tests/test_trl_surface.py`` runs it, so trying the next TRL release is one
test run (docs/development.md lists the same table).

Public methods empo overrides (``compute_loss``, ``create_optimizer``) are listed too: their parameters matter the
same way. What cannot be checked by signature -- the order of the tuple ``_generate`` returns (empo reads its prompt
and completion ids, items 0 and 1), the keys of the batch ``_generate_and_score_completions`` returns -- is checked by
the tests that run the trainer (tests/test_reward_contract.py, tests/test_trainer.py, tests/test_filter_exact.py).
"""

from __future__ import annotations

import inspect

#: (owner, name) -> (what empo does with it, the parameter names it was written against; None: a module attribute)
SURFACE = {
    ("trl.GRPOTrainer", "_calculate_rewards"): ("overrides: the one group analysis, token statistics",
                                                ("self", "inputs", "prompts", "completions", "completion_ids_list")),
    ("trl.GRPOTrainer", "_generate_and_score_completions"): ("overrides: the filter, dynamic sampling, the logs",
                                                             ("self", "inputs")),
    ("trl.GRPOTrainer", "_generate"): ("overrides: keeps the prompt and completion ids", ("self", "prompts")),
    ("trl.GRPOTrainer", "_prepare_inputs"): ("overrides: counts kept tokens per optimizer step",
                                             ("self", "generation_batch")),
    ("trl.GRPOTrainer", "_get_train_sampler"): ("overrides: epoch-seeded order", ("self", "dataset")),
    ("trl.GRPOTrainer", "_save_checkpoint"): ("overrides: complete-or-nothing checkpoints", ("self", "model", "trial")),
    ("trl.GRPOTrainer", "_load_optimizer_and_scheduler"): ("overrides: restores dynamic sampling's question stream",
                                                           ("self", "checkpoint")),
    ("trl.GRPOTrainer", "compute_loss"): ("overrides: the filter's loss scale",
                                          ("self", "model", "inputs", "return_outputs", "num_items_in_batch")),
    ("trl.GRPOTrainer", "create_optimizer"): ("overrides: the optimizer step gate", ("self", "model")),
    ("trl.GRPOTrainer", "_get_per_token_logps_and_entropies"): (
        "calls: the rewards' token statistics",
        ("self", "model", "input_ids", "attention_mask", "logits_to_keep", "batch_size", "compute_entropy",
         "compute_aux_loss", "pixel_values", "image_grid_thw", "num_images", "pixel_attention_mask", "spatial_shapes",
         "num_tiles", "image_sizes", "token_type_ids", "mm_token_type_ids", "image_position_ids")),
    ("trl.GRPOTrainer", "_get_output_dir"): ("calls: the checkpoint folder", ("self", "trial")),
    ("trl.GRPOTrainer", "_generate_single_turn"): (
        "overridden by the tests' scripted trainer (tests/helpers/scripted.py)",
        ("self", "prompt_ids", "images", "multimodal_fields", "num_generations", "has_tool_images")),
    ("trl.generation.vllm_generation.VLLMGeneration", "_init_vllm"): ("overrides: the CPU engine's settings",
                                                                      ("self",)),
    ("trl.generation.vllm_generation.VLLMGeneration", "sync_weights"): ("overrides: CPU weight sync", ("self",)),
    ("trl.generation.vllm_generation.VLLMGeneration", "_iter_named_params"): ("calls: the weights to sync",
                                                                              ("self",)),
    ("trl.trainer.grpo_trainer", "VLLMGeneration"): ("swaps: empo's generation class while the trainer is built",
                                                     None),
    ("trl.generation.vllm_generation", "LLM"): ("swaps: vLLM's engine with empo's settings", None),
    ("trl.trainer.utils", "pad"): ("calls: pads the token statistics' batch", None),
    ("trl.trainer.utils", "is_async_callable"): ("calls: guards a coroutine reward", None),
    ("trl.models.utils", "disable_gradient_checkpointing"): ("calls: the token statistics' no-grad pass", None),
}

#: Attributes empo reads from a GRPOTrainer, set in its ``__init__``.
ATTRIBUTES = ("_metrics", "_tokenizer", "num_generations", "num_generations_eval", "temperature", "loss_type",
              "reward_func_names", "vllm_generation")


#: Names TRL defines only when vLLM is installed (checked then).
NEEDS_VLLM = {("trl.generation.vllm_generation", "LLM")}


def _resolve(owner: str):
    """A module by its dotted name, or a class inside one (``trl.GRPOTrainer``)."""
    import importlib

    try:
        return importlib.import_module(owner)
    except ImportError:
        module, _, attr = owner.rpartition(".")
        return getattr(importlib.import_module(module), attr)


def check_surface() -> list[str]:
    """One line per private name that is gone or whose parameters changed; empty when the surface is as written."""
    import importlib.util

    vllm = importlib.util.find_spec("vllm") is not None
    problems = []
    for (owner, name), (use, params) in SURFACE.items():
        if (owner, name) in NEEDS_VLLM and not vllm:
            continue
        try:
            target = getattr(_resolve(owner), name)
        except (ImportError, AttributeError) as e:
            problems.append(f"{owner}.{name} ({use}): missing ({type(e).__name__}: {e})")
            continue
        if params is None:
            continue
        found = tuple(inspect.signature(target).parameters)
        if found != params:
            problems.append(f"{owner}.{name} ({use}): parameters {found}, empo was written against {params}")
    from trl import GRPOTrainer

    source = inspect.getsource(GRPOTrainer.__init__)
    problems += [f"trl.GRPOTrainer.{a}: no longer set in GRPOTrainer.__init__ (empo reads it)" for a in ATTRIBUTES
                 if f"self.{a} =" not in source]
    return problems
