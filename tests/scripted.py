"""Test doubles for the trainer: a tiny random Llama with the default tokenizer, and a trainer whose
generation step returns scripted completions (the rest of TRL's pipeline runs for real)."""

from __future__ import annotations

from pathlib import Path

from empo.trainer import EmpoTrainer

# question -> the G answers its completions give, by global position in the group
SCRIPT = {
    "What is 1 + 1?": ["2", "2", "2", "2"],          # unanimous: H = 0, dropped by the filter
    "What is 2 + 3?": ["5", "5", "6", None],         # mixed: kept
    "What is 4 + 4?": ["8", "\\frac{16}{2}", "7", "9"],  # mixed (8 and 16/2 cluster together): kept
    "What is 9 - 3?": ["1", "2", "3", "4"],          # all different: H = log G, dropped
}


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
