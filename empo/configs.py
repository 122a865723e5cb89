"""Recipe dataclasses. One YAML recipe fills three of them (open-r1/TRL convention):

- ``EmpoArguments`` (this file): data, prompt, rewards, the entropy filter, monitors;
- ``trl.GRPOConfig``: everything about GRPO training (batch sizes, G, lr, loss, logging, checkpoints);
- ``trl.ModelConfig``: the model and LoRA (``use_peft``, ``lora_r``...).

``empo train --config recipe.yaml`` and ``accelerate launch -m empo.train --config recipe.yaml`` read the same file;
command-line flags override it. Reading and checking a recipe is :mod:`empo.recipe`'s (an unknown key is an error
that names it); this file only declares the settings, each with its help.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: How answers are clustered (EmpoArguments.clustering); empo.clustering.math_clusters.build_clusterer builds each.
CLUSTERINGS = ("math", "entailment", "embedding")
#: What a dynamic-sampling batch still short of accepted groups does (EmpoArguments.dynamic_sampling_unfilled).
UNFILLED = ("train", "skip")
#: How many questions a dynamic-sampling round after the first takes (EmpoArguments.sampling_round_size).
ROUND_SIZES = ("generation_batch", "shortfall")
#: What label-free stopping does when its rule fires (EmpoArguments.stopping; empo.training.stopping).
STOPPING_MODES = ("mark", "stop", "off")
#: The judges of the 'entailment' clustering (EmpoArguments.entailment_judge); empo.clustering.judges builds each.
ENTAILMENT_JUDGES = ("verifier", "nli")
#: How the verifier judge runs (EmpoArguments.judge_engine): transformers' forward pass, or vLLM's offline engine.
JUDGE_ENGINES = ("hf", "vllm")


@dataclass
class EmpoArguments:
    """What EMPO adds to TRL's GRPO configuration."""

    # data
    dataset_name: str = field(default="arith", metadata={
        "help": "'arith' (or 'arith:add1,mul1'), a local .jsonl/.json/.parquet file, or a hub dataset id."})
    dataset_split: str = field(default="train", metadata={"help": "Split to train on."})
    dataset_subset: str | None = field(default=None, metadata={"help": "Hub dataset config name."})
    question_field: str = field(default="problem", metadata={"help": "Column with the question."})
    answer_field: str | None = field(default="answer", metadata={
        "help": "Gold column: logged as majority/sample accuracy and read only by 'gold_accuracy'. None: unlabeled."})
    id_field: str | None = field(default="id", metadata={"help": "Column with a stable id."})
    dataset_limit: int | None = field(default=None, metadata={"help": "Use the first N questions (arith: generate N)."})
    arith_seed: int = field(default=0, metadata={"help": "Seed of the arithmetic question generator."})
    # prompt
    prompt: str = field(default="boxed-example", metadata={
        "help": "Prompt preset ('boxed-example', 'qwen-math') or a .yaml/.json file with system_prompt, "
                "user_template and few_shot."})
    # rewards and filter
    reward_funcs: list[str] = field(default_factory=lambda: ["empo"], metadata={
        "help": "Rewards: a name (empo, majority_vote, gold_accuracy, format, random, self_certainty, token_entropy, "
                "novelty, negative_labels, or an installed package's entry point; `empo rewards` lists them), an "
                "import path (mypkg.rewards.novelty or mypkg.rewards:novelty) or a file (path/to/reward.py:novelty). "
                "Weights: GRPOConfig.reward_weights. See empo.rewards.registry."})
    reward_options: dict | str | None = field(default=None, metadata={
        "help": "Options of each reward, by its reward_funcs entry or its name: {empo: {no_answer_reward: -0.5}, "
                "random: {seed: 3}} (a JSON object on the command line). A reward's options are its constructor's "
                "parameters (a function's keyword parameters); an unknown or missing one is an error."})
    entropy_filter: bool = field(default=True, metadata={
        "help": "Train only on groups with delta_low < semantic entropy < delta_high; others leave the loss and "
                "its normaliser."})
    delta_low: float = field(default=0.0, metadata={"help": "Lower entropy bound in nats (exclusive)."})
    delta_high: float | None = field(default=None, metadata={
        "help": "Upper entropy bound in nats (exclusive); None means log(G), dropping all-different groups."})
    dynamic_sampling: bool = field(default=False, metadata={
        "help": "Fill every generation batch with accepted groups only (DAPO's dynamic sampling, by semantic entropy): "
                "after TRL's generation round, further rounds sample G completions for a fresh generation batch of "
                "questions until the batch holds only groups inside the entropy band (delta_low < H < delta_high, "
                "with entropy_filter) whose largest cluster holds at least min_majority_share; accepted groups beyond "
                "a full batch are dropped (see empo.training.dynamic_sampling)."})
    max_sampling_rounds: int = field(default=4, metadata={
        "help": "With dynamic_sampling: generation rounds per generation batch, the first included; a batch still "
                "short of accepted groups then trains on what it has or skips (dynamic_sampling_unfilled)."})
    sampling_round_size: str = field(default="generation_batch", metadata={
        "help": "With dynamic_sampling, the questions each round after the first takes: 'generation_batch' (a whole "
                "generation batch, as DAPO) or 'shortfall' (the groups still missing divided by the run's running "
                "acceptance rate, at least the groups missing and at most sampling_round_cap generation batches: "
                "fewer rounds and fewer batches left short; see empo.training.dynamic_sampling.RoundSizer)."})
    sampling_round_cap: float = field(default=2.0, metadata={
        "help": "With sampling_round_size 'shortfall': the most questions one round takes, in generation batches "
                "(bounds the generation memory of a round)."})
    dynamic_sampling_unfilled: str = field(default="train", metadata={
        "help": "With dynamic_sampling, a batch short of accepted groups after max_sampling_rounds: 'train' (on the "
                "accepted groups it has, the rest of the batch masked out exactly as the filter does) or 'skip' (no "
                "optimizer step)."})
    # clustering (empo.clustering.math_clusters.build_clusterer; free-form answers: empo.clustering.freeform, judges:
    # empo.clustering.judges)
    clustering: str = field(default="math", metadata={
        "help": "How answers are extracted and clustered: 'math' (last \\boxed{}, mathematical equivalence), "
                "'entailment' (free-form text, bidirectional entailment by entailment_judge) or 'embedding' "
                "(free-form text, cosine of sentence embeddings >= judge_threshold)."})
    entailment_judge: str = field(default="verifier", metadata={
        "help": "With clustering 'entailment': 'verifier' (a causal LM asked whether two answers mean the same, "
                "P(yes) vs P(no)) or 'nli' (a sequence-classification model with an entailment label)."})
    judge_model: str | None = field(default=None, metadata={
        "help": "The judge's model: hub id, local directory or alias. None: 'smollm2-135m-instruct' for the "
                "verifier, 'all-minilm-l6-v2' for embedding; 'nli' needs one."})
    judge_threshold: float | None = field(default=None, metadata={
        "help": "Score at or above which the judge says yes: P(yes) or P(entailment) in [0, 1], cosine for "
                "embedding. None: the default models' calibrated thresholds "
                "(empo.clustering.judges.CALIBRATED_THRESHOLD, from eval/results/benchmarks/judges_cpu.json), else "
                "0.5 (verifier, nli) or 0.8 (embedding)."})
    judge_template: str | None = field(default=None, metadata={
        "help": "The verifier's prompt: 'same_meaning' (default), 'entailment' (one-way), 'general_verifier' (the raw "
                "prompt of TIGER-Lab/general-verifier, as the official EMPO code asks it), or a format string with "
                "{question}, {a} and {b} (sent through the chat template)."})
    judge_device: str = field(default="cpu", metadata={"help": "Device of the judge model: 'cpu', 'cuda', "
                                                             "'cuda:1', or 'auto'."})
    judge_batch_size: int | None = field(default=None, metadata={
        "help": "Pairs (texts for embedding) per judge forward pass. None: the judge's default (with judge_engine "
                "'vllm': every pending pair of a group in one call, vLLM batches them)."})
    judge_engine: str = field(default="hf", metadata={
        "help": "How the verifier judge runs: 'hf' (a transformers forward pass per batch of pairs) or 'vllm' "
                "(vLLM's offline engine on judge_device, each group's pending pairs in one call; the vllm extra; not "
                "beside TRL's colocated vLLM engine, one per process). "
                "empo.clustering.judges.verifier.VLLMVerifierJudge."})
    judge_gpu_memory_utilization: float = field(default=0.1, metadata={
        "help": "With judge_engine 'vllm': the share of judge_device's memory the judge's engine takes (weights and "
                "KV cache), beside the training process; empo launch counts it."})
    max_answer_chars: int | None = field(default=300, metadata={
        "help": "Free-form: an answer longer than this many characters counts as missing. None: no limit."})
    reject_question_echo: bool = field(default=True, metadata={
        "help": "Free-form: an answer that repeats the question counts as missing (no reward)."})
    min_majority_share: float = field(default=0.0, metadata={
        "help": "When a group's largest cluster holds a smaller share of its G answers, every completion of the "
                "group gets 0 from 'empo' and 'majority_vote' (noise, not consensus). 0: off."})
    # logs
    log_samples_every: int = field(default=1, metadata={
        "help": "Write samples.jsonl (every group's completions, answers, rewards) for every Nth generation batch: "
                "a paper-scale run's completions fill gigabytes (empo launch prints the disk a run needs)."})
    # label-free stopping
    stopping: str = field(default="mark", metadata={
        "help": "Label-free stopping (empo.training.stopping): 'mark' writes <output_dir>/stopping.json when the run "
                "turns from learning to collapse (semantic entropy of the sampled groups down to "
                "stopping_entropy_fraction of its start, or answers vanishing, or completions shrinking) with the "
                "checkpoint it chooses, and trains on; 'stop' also ends training there; 'off'."})
    stopping_window: int = field(default=4, metadata={
        "help": "Logging steps in the trailing mean that smooths each signal of the stopping rule."})
    stopping_entropy_fraction: float = field(default=0.5, metadata={
        "help": "The stopping rule's saturation: the smoothed semantic entropy at or below this share of its start."})
    stopping_patience: int = field(default=2, metadata={
        "help": "Consecutive logging steps the stopping rule's sign must hold before it fires."})
    # grading limits (wall-clock; see empo.grading.mathverify_pool)
    math_timeout: float | None = field(default=None, metadata={
        "help": "Seconds one math-verify operation (a parse, or a comparison of two answers) may take before it "
                "counts as 'not equivalent' (default: $EMPO_MATH_TIMEOUT or 5). An answer that times out against "
                "two partners is not compared again in the run. Answers that hit a timeout: empo/math_timeouts."})
    group_time_budget: float | None = field(default=None, metadata={
        "help": "Seconds all math-verify work for one group may take (default: 2 x math_timeout; 0: no limit). "
                "Answers still unresolved then stay their own clusters and the step goes on; counted as "
                "empo/groups_over_budget."})
    # rollouts
    vllm_enforce_eager: bool | None = field(default=None, metadata={
        "help": "With use_vllm: run vLLM eagerly. None: eager on CPU (its graph compilation costs minutes there), "
                "compiled with CUDA graphs on GPU."})
    # machine
    num_threads: int | None = field(default=None, metadata={"help": "torch CPU threads (default: all cores)."})
    # run directory
    restart: bool = field(default=False, metadata={
        "help": "Start output_dir afresh even if it holds a run with other settings: its contents are moved to "
                "<output_dir>.replaced-<UTC time>/ (nothing is deleted). Without it, a resume with different "
                "defining settings is refused (see empo.training.run_dir)."})
    # launch (read by `empo launch`; training itself ignores them)
    accelerate_config: str | None = field(default=None, metadata={
        "help": "accelerate config file `empo launch` starts this recipe with (e.g. "
                "recipes/accelerate_configs/zero3.yaml); None: plain data parallel (ddp.yaml)."})
    dataset_rows: int | None = field(default=None, metadata={
        "help": "Number of training questions, for `empo launch`'s step arithmetic when the dataset file is not on "
                "this machine (it counts the file when it is)."})

    def __post_init__(self):
        # a flag gives reward_options as a JSON object: one shape (a mapping) for the rewards and the run's record
        self.reward_options = parse_options(self.reward_options) or None


def parse_options(reward_options) -> dict:
    """``reward_options`` as a mapping (a recipe gives a mapping; a command-line flag a JSON object)."""
    import json

    from empo.errors import ConfigError

    if reward_options is None:
        return {}
    if isinstance(reward_options, str):
        try:
            reward_options = json.loads(reward_options)
        except json.JSONDecodeError as e:
            raise ConfigError(f"reward_options: not a JSON object ({e}): {reward_options!r}") from None
    if not isinstance(reward_options, dict):
        raise ConfigError(f"reward_options: a mapping from reward to its options, got {reward_options!r}")
    return reward_options
