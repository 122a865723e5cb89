"""Test doubles for the trainer: a tiny random Llama with the default tokenizer, and a trainer whose
generation step returns scripted completions (the rest of TRL's pipeline runs for real)."""

from __future__ import annotations

from pathlib import Path

from empo.training.trainer import EmpoTrainer

G = 4  # completions per question in every scripted test

# question -> the G answers its completions give, by global position in the group
SCRIPT = {
    "What is 1 + 1?": ["2", "2", "2", "2"],          # unanimous: H = 0, dropped by the filter
    "What is 2 + 3?": ["5", "5", "6", None],         # mixed: kept
    "What is 4 + 4?": ["8", "\\frac{16}{2}", "7", "9"],  # mixed (8 and 16/2 cluster together): kept
    "What is 9 - 3?": ["1", "2", "3", "4"],          # all different: H = log G, dropped
}
# what the default entropy band keeps and drops of SCRIPT
KEPT, FILTERED = ["What is 2 + 3?", "What is 4 + 4?"], ["What is 1 + 1?", "What is 9 - 3?"]


def make_tiny_model(path: Path, tokenizer_source: str) -> str:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_source)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


class ScriptedTrainer(EmpoTrainer):
    """Replaces only the sampling call; completion i of a question says SCRIPT[question][global i mod G]."""

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        tok = self.processing_class
        start = self.accelerator.process_index * len(prompt_ids)
        out = []
        for i, ids in enumerate(prompt_ids):
            text = tok.decode(ids)
            question = next(q for q in SCRIPT if q in text.split("<|im_start|>user")[-1])
            answer = SCRIPT[question][(start + i) % num_generations]
            body = "I think about it." if answer is None else f"The answer is \\boxed{{{answer}}}."
            out.append(tok(body, add_special_tokens=False)["input_ids"] + [tok.eos_token_id])
        return out, None


def make_trainer(tmp_path, tiny, questions, rewards=("empo",), golds=None, per_device=G * 4, peft_config=None,
                 callbacks=None, dtype="float32", **overrides):
    """A ScriptedTrainer on ``questions`` (in order, G completions each) with the model at ``tiny`` loaded in
    ``dtype``; GRPOConfig/EmpoArguments overrides (scripts/gpu_check.py passes use_cpu=False, bf16=True)."""
    import datasets
    from trl import GRPOConfig

    from empo.configs import EmpoArguments
    from empo.model import load_model, load_tokenizer
    from empo.prompts import PRESETS, build_messages
    from empo.rewards import build_reward

    empo_kw = {k: overrides.pop(k) for k in list(overrides) if k in EmpoArguments.__dataclass_fields__}
    config = dict(output_dir=str(tmp_path / "out"), num_generations=G, per_device_train_batch_size=per_device,
                  max_completion_length=16, max_steps=1, learning_rate=1e-2, bf16=False, gradient_checkpointing=False,
                  use_cpu=True, report_to="none", logging_steps=1, save_strategy="no", seed=0, shuffle_dataset=False)
    config.update(overrides)
    golds = golds or ["0"] * len(questions)
    ds = datasets.Dataset.from_list([{"id": str(i), "prompt": build_messages(q, PRESETS["qwen-math"]), "answer": a}
                                     for i, (q, a) in enumerate(zip(questions, golds))])
    rewards = [build_reward(r, G) if isinstance(r, str) else r for r in rewards]  # names, or reward callables
    return ScriptedTrainer(model=load_model(tiny, dtype=dtype), reward_funcs=rewards,
                           args=GRPOConfig(**config), train_dataset=ds, processing_class=load_tokenizer(tiny),
                           peft_config=peft_config, callbacks=callbacks, empo_args=EmpoArguments(**empo_kw))


def generation_batch(trainer, questions):
    rows = {r["prompt"][-1]["content"]: r for r in trainer.train_dataset}
    return [dict(rows[q]) for q in questions for _ in range(G)]


def assert_same_gradients(got, want):
    """Each gradient in ``got`` equals ``want``'s to 1e-5 of its largest entry; a zero reference fails."""
    assert got.keys() == want.keys() and len(want) > 0
    for name in want:
        scale = want[name].abs().max().item()
        assert scale > 0, f"{name}: zero reference gradient, the comparison would prove nothing"
        diff = (got[name] - want[name]).abs().max().item()
        assert diff <= 1e-5 * scale, f"{name}: max |diff| {diff:.3g} vs max |grad| {scale:.3g}"


def lora_step_gradients(tmp_path, tiny, questions, loss_type, per_device, **overrides):
    """Train one optimizer step with LoRA under ``loss_type``; return (LoRA gradients before the step, trainer).

    Clipping is off so the gradients are the loss's own; the LoRA init is seeded so every call starts alike.
    """
    import torch
    from peft import LoraConfig
    from transformers import TrainerCallback

    class GradientCapture(TrainerCallback):
        grads = None

        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            if self.grads is None:
                self.grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    torch.manual_seed(0)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    capture = GradientCapture()
    level = "sequence" if loss_type == "luspo" else "token"  # TRL requires it for luspo
    trainer = make_trainer(tmp_path, tiny, questions, per_device=per_device, peft_config=lora, callbacks=[capture],
                           loss_type=loss_type, importance_sampling_level=level, max_grad_norm=0.0, **overrides)
    trainer.train()
    return capture.grads, trainer


def free_port() -> int:
    """A free local TCP port for torchrun's rendezvous: a fixed one collides with other 2-process test runs."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
