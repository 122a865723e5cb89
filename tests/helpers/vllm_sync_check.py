"""Run as a script: one EmpoTrainer GRPO step with colocated vLLM rollouts (LoRA, fp32 on CPU), then weight sync,
then greedy completions of fixed prompts from vLLM, from the updated HF policy and from the base model. Writes
token ids to the JSON file given as argv[1]. A subprocess because a vLLM engine owns process-wide state
(its distributed group, thread binding)."""

import json
import sys

import torch

PROMPTS = ["What is 2 + 3?", "What is 4 * 8?", "What is 9 - 4?", "What is 7 + 6?"]


def main(out_path: str) -> None:
    import datasets
    from peft import LoraConfig
    from trl import GRPOConfig
    from vllm import SamplingParams

    from empo.configs import EmpoArguments
    from empo.model import DEFAULT_MODEL, load_model, load_tokenizer, set_threads
    from empo.prompts import build_messages, get_prompt_config
    from empo.rewards import build_reward
    from empo.rollout.hf import prompt_token_ids
    from empo.training.trainer import EmpoTrainer

    set_threads(None)
    tok = load_tokenizer(DEFAULT_MODEL)
    prompt = get_prompt_config("boxed-example")
    ds = datasets.Dataset.from_list([{"id": str(i), "prompt": build_messages(q, prompt), "answer": None}
                                     for i, q in enumerate(PROMPTS)])
    args = GRPOConfig(output_dir=f"{out_path}.run", num_generations=8, per_device_train_batch_size=16,
                      max_completion_length=32, temperature=0.8, max_steps=1,
                      learning_rate=3e-2,  # one step large enough to change greedy outputs visibly
                      bf16=False, gradient_checkpointing=False, use_cpu=True, report_to="none", logging_steps=1,
                      save_strategy="no", seed=0, beta=0.0, loss_type="dapo", use_vllm=True, vllm_mode="colocate",
                      vllm_gpu_memory_utilization=0.25, vllm_max_model_length=1024)
    trainer = EmpoTrainer(model=load_model(DEFAULT_MODEL, dtype="float32"), reward_funcs=[build_reward("empo", 8)],
                          args=args, train_dataset=ds, processing_class=tok,
                          peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                 task_type="CAUSAL_LM"),
                          empo_args=EmpoArguments(entropy_filter=False))
    trainer.train()
    ids = [prompt_token_ids(tok, build_messages(q, prompt)) for q in PROMPTS]

    def vllm_greedy():
        outs = trainer.vllm_generation.llm.generate([{"prompt_token_ids": i} for i in ids],
                                                    SamplingParams(temperature=0, max_tokens=32), use_tqdm=False)
        return [list(o.outputs[0].token_ids) for o in outs]

    model = trainer.model.eval()

    def hf_greedy():
        with torch.inference_mode():
            return [model.generate(input_ids=torch.tensor([i]), do_sample=False, max_new_tokens=32,
                                   pad_token_id=tok.pad_token_id)[0, len(i):].tolist() for i in ids]

    before_sync = vllm_greedy()  # the engine still holds the weights synced before the step
    trainer.vllm_generation.sync_weights()
    result = {"vllm": vllm_greedy(), "hf": hf_greedy(), "vllm_before_sync": before_sync,
              "sync_seconds": trainer.vllm_generation.sync_seconds, "dtype": str(model.dtype)}
    with model.disable_adapter():
        result["base"] = hf_greedy()
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1])
