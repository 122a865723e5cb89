"""The arithmetic behind ``empo launch``: which GPU does what, how big a step is, how long a run is, and whether it
fits in GPU memory. Everything here is computed from the recipe, the accelerate config it names and the model's
architecture (``recipes/<model>/model_config.json``); nothing loads a model or touches a GPU.

A recipe that cannot work raises :class:`PlanError` with one message naming the cause, before anything starts.
The estimates are first-order (stated in ``Plan.assumptions``); they are meant to catch a run that cannot fit or
will take ten times longer than expected, not to replace a profiler.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from empo.errors import ConfigError, PlanError
from empo.launch.memory import MemoryModel

GiB = 1024**3
VLLM_SERVER_MAX_SEQS = 1024  # vLLM's default max_num_seqs on an 80+ GiB GPU (trl vllm-serve passes none)
SAMPLE_BYTES_PER_TOKEN, SAMPLE_BYTES_OVERHEAD = 4.5, 200  # samples.jsonl: text, then answers, rewards, advantages
# The verifier judge's prompt (empo.clustering.judges.verifier): its template's own tokens (general_verifier's is the
# longest, ~90) around the question and two answering parts, each cut to a few words by the reduction
JUDGE_TEMPLATE_TOKENS, JUDGE_PART_TOKENS = 96, 16
# The transformers judge loads in fp32: fp32 matmuls run at ~1/15 of bf16 tensor-core peak (H100 SXM: 67 vs 989)
FP32_SLOWDOWN = 15.0


@dataclass(frozen=True)
class ModelShape:
    """The architecture numbers the memory and time estimates need (a Llama/Qwen2-style decoder)."""

    num_hidden_layers: int
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    max_position_embeddings: int | None = None

    @classmethod
    def from_file(cls, path: Path) -> ModelShape:
        raw = json.loads(Path(path).read_text())
        names = cls.__dataclass_fields__
        missing = [k for k in ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size",
                               "vocab_size") if k not in raw]
        if missing:
            raise PlanError(f"model config {path} lacks {', '.join(missing)}")
        raw.setdefault("num_key_value_heads", raw["num_attention_heads"])
        return cls(**{k: v for k, v in raw.items() if k in names})

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each projection in one decoder layer, by the usual module names."""
        h, kv = self.hidden_size, self.num_key_value_heads * self.head_dim
        i = self.intermediate_size
        return {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def layer_params(self) -> int:
        h, kv = self.hidden_size, self.num_key_value_heads * self.head_dim
        bias = (h + 2 * kv) if self.attention_bias else 0
        return sum(a * b for a, b in self.linear_shapes().values()) + bias + 2 * h  # + two RMSNorms

    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    def params(self) -> int:
        head = 0 if self.tie_word_embeddings else self.embedding_params()
        return self.num_hidden_layers * self.layer_params() + self.embedding_params() + head + self.hidden_size

    def lora_targets(self, targets) -> list[str]:
        """The layer's linears a LoRA ``lora_target_modules`` adapts (None and "all-linear": every one)."""
        return [name for name in self.linear_shapes() if targets in (None, "all-linear") or name in targets]

    def lora_params(self, r: int, targets) -> int:
        shapes = self.linear_shapes()
        return self.num_hidden_layers * sum(r * sum(shapes[name]) for name in self.lora_targets(targets))

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        return 2 * self.num_hidden_layers * self.num_key_value_heads * self.head_dim * dtype_bytes


@dataclass(frozen=True)
class Sharding:
    """How the accelerate config shards the training state."""

    kind: str            # "ddp", "zero1", "zero2", "zero3", "fsdp"
    offload_optimizer: bool = False
    offload_params: bool = False

    @classmethod
    def from_accelerate_config(cls, path: Path | None) -> Sharding:
        from empo.io import read_yaml

        if path is None:
            return cls("ddp")
        cfg = read_yaml(path, "accelerate config") or {}  # missing or malformed: one line naming the file
        kind = cfg.get("distributed_type", "MULTI_GPU")
        if kind == "DEEPSPEED":
            ds = cfg.get("deepspeed_config") or {}
            stage = int(ds.get("zero_stage", 0))
            return cls(f"zero{stage}" if stage else "ddp",
                       offload_optimizer=ds.get("offload_optimizer_device", "none") != "none",
                       offload_params=ds.get("offload_param_device", "none") != "none")
        if kind == "FSDP":
            return cls("fsdp", offload_params=bool((cfg.get("fsdp_config") or {}).get("fsdp_offload_params")))
        return cls("ddp")

    @property
    def deepspeed(self) -> bool:
        return self.kind.startswith("zero")

    def divisors(self, n: int) -> tuple[int, int, int]:
        """Divisors of (weights, gradients, optimizer states) across n trainer processes."""
        return {"ddp": (1, 1, 1), "zero0": (1, 1, 1), "zero1": (1, 1, n), "zero2": (1, n, n),
                "zero3": (n, n, n), "fsdp": (n, n, n)}[self.kind]


@dataclass(frozen=True)
class Cluster:
    nodes: int = 1
    gpus_per_node: int = 8
    gpu_memory_gib: float = 80.0
    # time model (stated in the plan's assumptions; flags of `empo launch`)
    peak_tflops: float = 989.0          # H100 SXM dense bf16
    train_mfu: float = 0.30
    generation_mfu: float = 0.10
    decode_step_s: float = 0.010        # floor on one vLLM decode step (scheduling + kernel launches)
    cluster_answers_per_s: float = 200.0  # math answers clustered per second by one training process (CPU)
    mean_prompt_tokens: int = 256
    mean_completion_fraction: float = 0.5


@dataclass
class Layout:
    """Which GPUs serve vLLM and which train."""

    vllm_mode: str | None                # "server", "colocate" or None (HF generate)
    trainers: int                        # training processes in total
    trainer_nodes: int
    trainers_per_node: int
    server_gpus: int = 0                 # GPUs running `trl vllm-serve`
    server_dedicated_node: bool = False  # multi-node server mode: node 0 only serves
    tensor_parallel: int = 1
    data_parallel: int = 1               # vLLM replicas on the server


@dataclass
class JudgeLoad:
    """The verifier judge of a free-form recipe, on each training process's GPU (``empo.clustering.judges``)."""

    model: str
    engine: str                 # "hf" (transformers, fp32) or "vllm"
    params: int
    resident_gib: dict[str, float]
    peak_gib: dict[str, float]  # the transformers judge's one batch (a passing peak of its own)
    pairs_per_step: int         # directed pairs per optimizer step, at most (every answer its own part)
    tokens_per_pair: int
    kv_tokens: float | None = None


@dataclass
class Plan:
    recipe: str
    model: str
    layout: Layout
    sharding: Sharding
    use_peft: bool
    params: int
    trainable_params: int
    num_generations: int
    per_device_batch: int
    grad_accum: int
    generation_batch: int
    completions_per_step: int
    prompts_per_step: int
    optimizer_steps_per_generation: float
    dataset_rows: int | None
    dataset_rows_source: str
    steps_per_epoch: int | None
    total_steps: int | None
    max_completion_length: int
    max_model_length: int
    vllm_gpu_memory_utilization: float | None = None
    output_dir: str = ""
    save_steps: float | None = None
    memory_model: MemoryModel = field(default_factory=MemoryModel)  # GiB per training GPU: resident + phases
    vllm_memory: dict[str, float] = field(default_factory=dict)  # GiB per vLLM GPU (server) / share (colocate)
    disk_gb: dict[str, float] = field(default_factory=dict)
    vllm_kv_tokens: float | None = None
    model_states_gib: float = 0.0          # weights + gradients + optimizer states per training GPU
    generation_waves: int = 1
    step_seconds: dict[str, float] = field(default_factory=dict)
    gpu_hours: float | None = None
    assumptions: list[str] = field(default_factory=list)
    cluster: Cluster = field(default_factory=Cluster)
    rewards: list[str] = field(default_factory=list)  # "name (origin; label-free|supervised)", one per reward_funcs
    token_statistics: tuple[str, ...] = ()  # what the rewards read of the policy per token (empo.rewards.contract)
    judge: JudgeLoad | None = None          # the free-form verifier judge beside each training process, when counted

    @property
    def total_gpus(self) -> int:
        return self.cluster.nodes * self.cluster.gpus_per_node

    @property
    def memory(self) -> dict[str, float]:
        """Every memory term per training GPU (GiB), the phase terms named with their phase."""
        return self.memory_model.components()

    @property
    def memory_per_gpu(self) -> float:
        """Resident terms plus the largest phase peak (GiB per training GPU)."""
        return self.memory_model.total

    @property
    def completion_tokens_per_step(self) -> int:
        return self.completions_per_step * self.max_completion_length

    def to_json(self) -> dict:
        """The plan as one JSON-ready object (``empo launch --json``)."""
        from dataclasses import asdict

        mm = self.memory_model
        return {
            "recipe": self.recipe, "model": self.model, "params": self.params,
            "trainable_params": self.trainable_params, "lora": self.use_peft,
            "layout": asdict(self.layout), "sharding": asdict(self.sharding), "cluster": asdict(self.cluster),
            "batch": {"num_generations": self.num_generations, "per_device": self.per_device_batch,
                      "gradient_accumulation": self.grad_accum, "completions_per_step": self.completions_per_step,
                      "prompts_per_step": self.prompts_per_step, "generation_batch": self.generation_batch,
                      "optimizer_steps_per_generation": self.optimizer_steps_per_generation},
            "steps": {"per_epoch": self.steps_per_epoch, "total": self.total_steps, "dataset_rows": self.dataset_rows,
                      "dataset_rows_source": self.dataset_rows_source},
            "memory_per_gpu_gib": {"total": self.memory_per_gpu, "budget": self.cluster.gpu_memory_gib,
                                   "peak_phase": mm.peak_phase,
                                   "components": {"model_states": self.model_states_gib, **self.memory},
                                   "resident": mm.resident, "phases": mm.phases},
            "vllm_memory_gib": self.vllm_memory, "generation_waves": self.generation_waves,
            "step_seconds": self.step_seconds, "gpu_hours": self.gpu_hours, "disk_gb": self.disk_gb,
            "rewards": self.rewards, "token_statistics": list(self.token_statistics),
            "judge": asdict(self.judge) if self.judge is not None else None,
            "assumptions": self.assumptions,
        }

    def format(self) -> str:
        lo, c = self.layout, self.cluster
        out = [f"empo launch plan: {self.recipe}",
               f"  model            {self.model}: {self.params / 1e9:.2f} B parameters, "
               + (f"LoRA ({self.trainable_params / 1e6:.1f} M trainable)" if self.use_peft else "full weights"),
               f"  GPUs             {c.nodes} node(s) x {c.gpus_per_node} = {self.total_gpus}, "
               f"{c.gpu_memory_gib:g} GiB each"]
        if lo.vllm_mode == "server":
            where = ("node 0 (all its GPUs)" if lo.server_dedicated_node else
                     f"GPU {'0' if lo.server_gpus == 1 else f'0-{lo.server_gpus - 1}'} of node 0")
            out.append(f"  vLLM             server on {where}: tensor parallel {lo.tensor_parallel} x data parallel "
                       f"{lo.data_parallel}")
        elif lo.vllm_mode == "colocate":
            out.append(f"  vLLM             colocated in every training process, tensor parallel {lo.tensor_parallel}")
        else:
            out.append("  generation       transformers generate inside each training process (use_vllm: false)")
        out += [f"  world size       {lo.trainers} training processes ({lo.trainer_nodes} node(s) x "
                f"{lo.trainers_per_node}), sharding {self.sharding.kind}",
                f"  per step         {self.completions_per_step} completions = {self.prompts_per_step} prompts x "
                f"G={self.num_generations} ({self.per_device_batch} per device x {lo.trainers} x "
                f"{self.grad_accum} accumulation); G divides it",
                f"  rewards          {'; '.join(self.rewards)}",
                f"  generation       {self.generation_batch} completions per rollout = "
                f"{self.optimizer_steps_per_generation:g} optimizer step(s)",
                f"  completion tokens {self.completion_tokens_per_step:,} per step at most "
                f"({self.completions_per_step} x {self.max_completion_length})"]
        if self.total_steps is not None:
            out.append(f"  steps            {self.steps_per_epoch} per epoch ({self.dataset_rows} rows, "
                       f"{self.dataset_rows_source}); {self.total_steps} optimizer steps in total; "
                       f"{self.total_steps * self.completion_tokens_per_step / 1e9:.2f} B completion tokens at most")
        else:
            out.append(f"  steps            unknown: {self.dataset_rows_source}")
        mm = self.memory_model
        out.append(f"  memory per training GPU  {self.memory_per_gpu:.1f} GiB of {c.gpu_memory_gib:g} (resident + the "
                   f"largest passing peak, {mm.peak_phase})")
        out += [f"    {k:<50} {v:6.1f}" for k, v in mm.resident.items()]
        for phase, terms in mm.phases.items():
            mark = "  <- peak" if phase == mm.peak_phase else ""
            out.append(f"    during {phase}: {sum(terms.values()):.1f}{mark}")
            out += [f"      {k:<48} {v:6.1f}" for k, v in terms.items()]
        if self.vllm_memory:
            out.append("  vLLM memory (GiB per " + ("server GPU)" if lo.vllm_mode == "server" else "training GPU, "
                                                  "included above)"))
            out += [f"    {k:<34} {v:6.1f}" for k, v in self.vllm_memory.items()]
        if self.step_seconds:
            s = self.step_seconds
            judging = (f", of which the judge at most {s['judging (at most)']:.1f} s"
                       if "judging (at most)" in s else "")
            out.append(f"  time per step    ~{s['total']:.0f} s (generation {s['generation']:.0f} s in "
                       f"{self.generation_waves} wave(s) + training {s['training']:.0f} s + answer clustering "
                       f"{s['clustering']:.1f} s{judging}, not overlapped)")
        if self.disk_gb:
            d = self.disk_gb
            out.append(f"  disk             ~{sum(d.values()):,.0f} GB: "
                       + ", ".join(f"{k} {v:,.1f} GB" for k, v in d.items()))
        if self.gpu_hours is not None:
            wall = self.gpu_hours / self.total_gpus
            out.append(f"  estimate         ~{self.gpu_hours:,.0f} GPU-hours ({wall:,.1f} h "
                       f"wall-clock on {self.total_gpus} GPUs)")
        out.append(f"  preemption       SIGTERM or SIGUSR1 saves the current step and exits 75 "
                   f"({self.output_dir}/preempted.json); the same command resumes from the last complete checkpoint "
                   f"(save_steps {self.save_steps:g}); --slurm requeues on it (warned 300 s before the time limit)")
        out.append("  assumptions")
        out += [f"    - {a}" for a in self.assumptions]
        return "\n".join(out)


def find_model_shape(recipe: Path, model_name_or_path: str) -> tuple[ModelShape, Path]:
    """``<recipe's model dir>/model_config.json`` beside the recipe, else a local checkpoint's ``config.json``."""
    recipe = Path(recipe).resolve()
    for candidate in (recipe.parent.parent / "model_config.json", recipe.parent / "model_config.json",
                      Path(model_name_or_path) / "config.json"):
        if candidate.is_file():
            return ModelShape.from_file(candidate), candidate
    raise PlanError(f"no model architecture for '{model_name_or_path}': put its config.json numbers in "
                    f"{recipe.parent.parent / 'model_config.json'}")


def count_rows(dataset_name: str) -> int | None:
    from empo.data import repo_data_file

    path = repo_data_file(dataset_name) or Path(dataset_name)
    if not path.is_file():
        return None
    if path.suffix == ".jsonl":
        with path.open("rb") as f:
            return sum(1 for line in f if line.strip())
    from empo.data import DataSpec, load_questions

    return len(load_questions(DataSpec(name=str(path), answer_field=None, id_field=None)))


def make_layout(vllm_mode: str | None, cluster: Cluster, tensor_parallel: int) -> Layout:
    n, g = cluster.nodes, cluster.gpus_per_node
    if vllm_mode == "server":
        if n == 1:
            if tensor_parallel > g:
                raise PlanError(f"vLLM tensor parallel size {tensor_parallel} is larger than the {g} GPUs of the node")
            if g < tensor_parallel + 1:
                raise PlanError(f"server mode needs the vLLM server's {tensor_parallel} GPU(s) plus at least one "
                                f"trainer; the node has {g} GPU(s)")
            return Layout("server", trainers=g - tensor_parallel, trainer_nodes=1,
                          trainers_per_node=g - tensor_parallel,
                          server_gpus=tensor_parallel, tensor_parallel=tensor_parallel)
        # several nodes: accelerate needs the same process count on every machine, so node 0 only serves
        if tensor_parallel > g:
            raise PlanError(f"vLLM tensor parallel size {tensor_parallel} is larger than the {g} GPUs of the server "
                            "node")
        return Layout("server", trainers=(n - 1) * g, trainer_nodes=n - 1, trainers_per_node=g, server_gpus=g,
                      server_dedicated_node=True, tensor_parallel=tensor_parallel, data_parallel=g // tensor_parallel)
    if vllm_mode == "colocate" and tensor_parallel > g:
        raise PlanError(f"vLLM tensor parallel size {tensor_parallel} is larger than the {g} GPUs of a node "
                        f"(colocated tensor-parallel groups stay within a node)")
    if vllm_mode == "colocate" and g % tensor_parallel:
        raise PlanError(f"vLLM tensor parallel size {tensor_parallel} does not divide the {g} GPUs per node")
    return Layout(vllm_mode, trainers=n * g, trainer_nodes=n, trainers_per_node=g, tensor_parallel=tensor_parallel)


def accelerate_config_path(spec: str | None) -> Path:
    """The accelerate config a recipe names (a path, or a shipped one: ``recipes/accelerate_configs/zero3.yaml``,
    ``zero3``); None: the shipped ``ddp.yaml``."""
    from empo import resources

    path = resources.resolve(spec or "ddp", "recipes", subdir="accelerate_configs")
    if path is None:
        shipped = sorted(p.stem for p in (resources.root("recipes") / "accelerate_configs").glob("*.yaml"))
        raise PlanError(f"accelerate config '{spec}' does not exist (neither a file nor a shipped config: "
                        f"{', '.join(shipped)})")
    return path.resolve()  # absolute: the launch may run from another directory (a Slurm job's)


def make_plan(recipe, cluster: Cluster = Cluster(), vllm_mode: str | None = None,
              overrides: list[str] | None = None, dataset_rows: int | None = None) -> Plan:
    """Lay a recipe out on the cluster and check that it can run. ``recipe``: an :class:`empo.recipe.Recipe`, or a
    recipe spec (with ``overrides``) that is loaded here, as ``empo train`` loads it."""
    from empo.recipe import Recipe, load_recipe

    if not isinstance(recipe, Recipe):
        try:
            recipe = load_recipe(recipe, overrides or [], any_machine=True, check_machine=False)
        except ConfigError as e:  # unreadable recipe, unknown key, TRL's own checks: one message, as empo train says it
            raise PlanError(str(e)) from None
    empo_args, args, model_args = recipe.empo, recipe.training, recipe.model
    if vllm_mode is not None and not args.use_vllm:
        raise PlanError(f"--vllm {vllm_mode} given but the recipe has use_vllm: false")
    mode = (vllm_mode or args.vllm_mode) if args.use_vllm else None
    tp = args.vllm_tensor_parallel_size if args.use_vllm else 1
    layout = make_layout(mode, cluster, tp)
    shape, shape_file = find_model_shape(recipe.path, model_args.model_name_or_path)
    sharding = Sharding.from_accelerate_config(accelerate_config_path(empo_args.accelerate_config))
    G, b, ga = args.num_generations, args.per_device_train_batch_size, args.gradient_accumulation_steps
    w = layout.trainers

    # --- batch arithmetic (TRL 1.16: GRPOConfig.__post_init__, with the real world size) ---
    if recipe.sets("generation_batch_size"):
        gen_batch = args.generation_batch_size
    else:
        gen_batch = b * w * (args.steps_per_generation if recipe.sets("steps_per_generation") else ga)
    if gen_batch % (b * w):
        raise PlanError(f"generation_batch_size {gen_batch} is not a multiple of the {b * w} completions one "
                        f"micro-step takes ({b} per device x {w} training processes)")
    if gen_batch % G:
        raise PlanError(f"G={G} does not divide the generation batch of {gen_batch} completions")
    per_step = b * w * ga
    if per_step % G:
        raise PlanError(f"G={G} does not divide the global batch: {per_step} completions per optimizer step "
                        f"({b} per device x {w} training processes x {ga} accumulation) would split a question's "
                        f"group across optimizer steps; make per_device_train_batch_size x "
                        f"gradient_accumulation_steps x {w} a multiple of {G}")
    steps_per_gen = gen_batch / per_step

    # --- steps ---
    rows = dataset_rows
    source = "--dataset-rows"
    if rows is None:
        rows = count_rows(empo_args.dataset_name)
        source = f"counted in {empo_args.dataset_name}"
    if rows is None and empo_args.dataset_rows:
        rows, source = empo_args.dataset_rows, f"the recipe's dataset_rows; {empo_args.dataset_name} is not here"
    if rows is None and empo_args.dataset_name.startswith("arith"):
        from empo.data import ARITH_DEFAULT_SIZE

        rows = empo_args.dataset_limit or ARITH_DEFAULT_SIZE.get(empo_args.dataset_split, 200)
        source = "arith generator"
    if rows is not None and empo_args.dataset_limit:
        rows = min(rows, empo_args.dataset_limit)
    if rows is None:
        source = f"{empo_args.dataset_name} is not on this machine; pass --dataset-rows"
    prompts_per_gen = gen_batch // G
    steps_per_epoch = total = None
    if rows is not None:
        # TRL's RepeatSampler yields whole generation batches of distinct prompts; a last partial batch is dropped
        completions_per_epoch = (rows // prompts_per_gen) * gen_batch * args.num_iterations
        steps_per_epoch = completions_per_epoch // per_step
        if steps_per_epoch == 0:
            raise PlanError(f"the dataset's {rows} rows are fewer than one generation batch of {prompts_per_gen} "
                            "prompts")
    if args.max_steps and args.max_steps > 0:
        total = args.max_steps
    elif steps_per_epoch is not None:
        total = math.ceil(args.num_train_epochs * steps_per_epoch)
    max_len = args.vllm_max_model_length or (cluster.mean_prompt_tokens * 2 + args.max_completion_length)
    if shape.max_position_embeddings and max_len > shape.max_position_embeddings:
        raise PlanError(f"prompt + completion ({max_len} tokens) exceeds the model's {shape.max_position_embeddings} "
                        f"positions")

    params = shape.params()
    trainable = shape.lora_params(model_args.lora_r, model_args.lora_target_modules) if model_args.use_peft else params
    plan = Plan(recipe=str(recipe.path), model=model_args.model_name_or_path, layout=layout, sharding=sharding,
                use_peft=model_args.use_peft, params=params, trainable_params=trainable, num_generations=G,
                per_device_batch=b, grad_accum=ga, generation_batch=gen_batch, completions_per_step=per_step,
                prompts_per_step=per_step // G, optimizer_steps_per_generation=steps_per_gen, dataset_rows=rows,
                dataset_rows_source=source, steps_per_epoch=steps_per_epoch, total_steps=total,
                max_completion_length=args.max_completion_length, max_model_length=max_len, cluster=cluster,
                vllm_gpu_memory_utilization=args.vllm_gpu_memory_utilization if args.use_vllm else None,
                output_dir=args.output_dir, save_steps=args.save_steps)
    _rewards(plan, recipe)
    if empo_args.clustering != "math":
        _judge(plan, recipe)
    _memory(plan, shape, args, model_args, shape_file)
    _time(plan, shape, args)
    _disk(plan, args, empo_args)
    over = plan.memory_per_gpu - cluster.gpu_memory_gib
    if over > 0:
        top = ", ".join(f"{k} {v:.1f}" for k, v in sorted(plan.memory.items(), key=lambda kv: -kv[1])[:3])
        raise PlanError(f"memory over budget: ~{plan.memory_per_gpu:.1f} GiB per training GPU > "
                        f"{cluster.gpu_memory_gib:g} GiB ({top} GiB); lower per_device_train_batch_size or "
                        f"vllm_gpu_memory_utilization, shard more (zero3/fsdp), or use LoRA")
    return plan


def _dtype_bytes(model_args, args) -> int:
    dtype = (model_args.dtype or "float32").replace("torch.", "")
    return 2 if dtype in ("bfloat16", "float16", "bf16", "fp16") or (dtype == "auto" and args.bf16) else 4


def _memory(plan: Plan, shape: ModelShape, args, model_args, shape_file: Path) -> None:
    """Fill ``plan.memory_model`` and ``plan.vllm_memory`` (GiB), with the assumptions behind them
    (:mod:`empo.launch.memory` says where each term comes from)."""
    from empo.launch import memory as mem

    c, lo, sh = plan.cluster, plan.layout, plan.sharding
    n, wb = lo.trainers, _dtype_bytes(model_args, args)
    largest = max(shape.layer_params(), shape.embedding_params())
    model = mem.MemoryModel()
    states = mem.model_states(sh.kind, plan.params, plan.trainable_params, plan.use_peft, n, wb, largest,
                              sh.offload_optimizer, sh.offload_params)
    model.resident.update({k: v / GiB for k, v in states.items()})
    plan.model_states_gib = sum(states.values()) / GiB
    if plan.use_peft and sh.kind in ("zero3", "fsdp") or sh.kind == "fsdp":
        model.resident["gathered layers (ZeRO-3/FSDP, one ahead)"] = 2 * largest * 2 / GiB
    if sh.deepspeed and sh.kind != "zero1":
        model.resident["DeepSpeed reduce bucket (bf16)"] = mem.DS_REDUCE_BUCKET_ELEMENTS * 2 / GiB
    b, T, h, L = plan.per_device_batch, plan.max_model_length, shape.hidden_size, shape.num_hidden_layers
    act_bytes = 2 if args.bf16 else wb
    forward = {"activations" + (" (checkpointed)" if args.gradient_checkpointing else ""):
               mem.activations(L, b, T, h, shape.intermediate_size, shape.num_key_value_heads * shape.head_dim,
                               act_bytes, args.gradient_checkpointing,
                               lora_rank=model_args.lora_r if plan.use_peft else 0,
                               lora_modules=len(shape.lora_targets(model_args.lora_target_modules))) / GiB}
    head = mem.logprob_head(b * plan.max_completion_length, h, shape.vocab_size, head_trains=not plan.use_peft)
    forward.update({k: v / GiB for k, v in head.items()})
    model.phases["forward/backward"] = forward
    if lo.vllm_mode is None:  # TRL generates the process's whole share of the rollout in one generate() call
        per_process = math.ceil(plan.generation_batch / n)
        model.phases["generation (HF generate)"] = {
            "KV cache (HF generate)": per_process * T * shape.kv_bytes_per_token(wb) / GiB,
            "logits of one decode step (fp32)": per_process * shape.vocab_size * 4 / GiB}
    if sh.kind == "zero3" and not plan.use_peft and not sh.offload_optimizer:
        model.phases["optimizer step"] = {"bf16 parameter partition (beyond DeepSpeed's estimate)":
                                          2 * plan.params / n / GiB}
    if sh.kind == "zero3" and plan.use_peft and lo.vllm_mode is not None:
        model.phases["weight sync"] = {"whole model gathered to merge LoRA (TRL, ZeRO-3)": 2 * plan.params / GiB}
    vllm_weights = plan.params * 2 / lo.tensor_parallel / GiB
    if lo.vllm_mode in ("server", "colocate"):
        share = args.vllm_gpu_memory_utilization * c.gpu_memory_gib
        kv = share - vllm_weights - 1.0
        if kv <= 0:
            raise PlanError(f"vLLM's share ({args.vllm_gpu_memory_utilization:g} x {c.gpu_memory_gib:g} GiB = "
                            f"{share:.1f} GiB) does not hold its weights ({vllm_weights:.1f} GiB per GPU at tensor "
                            f"parallel {lo.tensor_parallel}) plus 1 GiB of buffers; raise vllm_gpu_memory_utilization")
        plan.vllm_kv_tokens = kv * GiB / (shape.kv_bytes_per_token(2) / lo.tensor_parallel)
        plan.vllm_memory = {"weights (bf16 / tensor parallel)": vllm_weights, "KV cache": kv,
                            "buffers": 1.0, "total (utilization x GPU)": share}
        plan.assumptions.append(f"vLLM's KV cache holds ~{plan.vllm_kv_tokens:,.0f} tokens = "
                                f"~{plan.vllm_kv_tokens / T:,.0f} sequences of {T} tokens at once per replica")
        if lo.vllm_mode == "colocate":
            model.resident["vLLM share (colocated)"] = share
    if plan.judge is not None:
        model.resident.update(plan.judge.resident_gib)
        if plan.judge.peak_gib:
            model.phases["judging (transformers verifier)"] = dict(plan.judge.peak_gib)
    plan.memory_model = mem.finish(model)
    plan.assumptions += [
        f"model architecture from {shape_file}",
        f"weights in {'bf16' if wb == 2 else 'fp32'}; model states as {sh.kind} keeps them over {n} training "
        "processes (" + ("LoRA: frozen base, fp32 adapters and Adam" if plan.use_peft else
                         "DeepSpeed's estimator" if sh.kind in ("zero2", "zero3") else
                         "FSDP2: fp32 master, gradient and Adam shards" if sh.kind == "fsdp" else
                         "torch AdamW, moments in the parameter dtype") + ")"
        + (" (optimizer offloaded to CPU)" if sh.offload_optimizer else "")
        + (" (parameters offloaded to CPU)" if sh.offload_params else ""),
        f"activations: a micro-batch of {b} sequence(s) of {T} tokens (prompt + completion, vllm_max_model_length or "
        f"2 x {c.mean_prompt_tokens} + completion); flash attention (no T^2 term)",
        "log-probs: TRL's chunked fused head (no [tokens x vocab] logits); memory terms in empo/launch/memory.py",
        "resident terms plus the largest of the passing peaks (forward/backward, HF generation, optimizer step, "
        "weight sync), which never coincide; CUDA context and NCCL 3 GiB, allocator fragmentation 10% of the rest",
    ]


def _time(plan: Plan, shape: ModelShape, args) -> None:
    c, lo = plan.cluster, plan.layout
    P = plan.params
    mean_completion = c.mean_completion_fraction * plan.max_completion_length
    tokens = plan.completions_per_step * (c.mean_prompt_tokens + mean_completion)
    # forward 2P + backward 4P (full) or 2P (LoRA: activation gradients only) + recompute 2P with checkpointing,
    # + a no-grad forward 2P for the old log-probs TRL computes for vLLM's importance-sampling correction
    per_token = 2 * P + (2 * P if plan.use_peft else 4 * P)
    per_token += 2 * P if args.gradient_checkpointing else 0
    old_logps = bool(args.use_vllm and args.vllm_importance_sampling_correction)
    per_token += 2 * P if old_logps else 0
    # rewards that read the policy's token statistics: one more no-grad forward (TRL's head), and one with the whole
    # vocabulary's logits for self_certainty (EmpoTrainer.token_statistics)
    wanted = set(plan.token_statistics)
    stat_passes = bool({"logps", "entropies"} & wanted) + ("self_certainty" in wanted)
    per_token += 2 * P * stat_passes
    train_s = tokens * per_token / (lo.trainers * c.peak_tflops * 1e12 * c.train_mfu)
    gen_gpus = lo.server_gpus if lo.vllm_mode == "server" else lo.trainers
    gen_tokens = plan.completions_per_step * mean_completion
    throughput_s = plan.completions_per_step * (c.mean_prompt_tokens + mean_completion) * 2 * P / (
        gen_gpus * c.peak_tflops * 1e12 * c.generation_mfu)
    # Waves: a vLLM instance keeps only as many sequences in flight as its KV cache holds; the rest wait for a slot.
    waves = 1
    if lo.vllm_mode is not None and plan.vllm_kv_tokens:
        instances = lo.data_parallel if lo.vllm_mode == "server" else lo.trainers // lo.tensor_parallel
        per_instance = math.ceil(plan.generation_batch / instances)
        concurrent = max(1, int(plan.vllm_kv_tokens // plan.max_model_length))
        if lo.vllm_mode == "server":
            concurrent = min(concurrent, VLLM_SERVER_MAX_SEQS)
        waves = math.ceil(per_instance / concurrent)
    latency_s = waves * plan.max_completion_length * c.decode_step_s / plan.optimizer_steps_per_generation
    gen_s = max(throughput_s, latency_s)
    # Clustering the answers: on CPU, shared out over the training processes (empo.clustering.groups)
    cluster_s = plan.completions_per_step / (lo.trainers * c.cluster_answers_per_s)
    judge_s = 0.0
    if plan.judge is not None:  # prefill only (one next token per pair): compute-bound, at the training MFU
        j = plan.judge
        rate = c.peak_tflops * 1e12 * c.train_mfu / (1.0 if j.engine == "vllm" else FP32_SLOWDOWN)
        judge_s = j.pairs_per_step * j.tokens_per_pair * 2 * j.params / (lo.trainers * rate)
    plan.step_seconds = {"generation": gen_s, "training": train_s, "clustering": cluster_s + judge_s,
                         "total": gen_s + train_s + cluster_s + judge_s}
    if plan.judge is not None:
        plan.step_seconds["judging (at most)"] = judge_s
    plan.generation_waves = waves
    if plan.total_steps is not None:
        plan.gpu_hours = plan.step_seconds["total"] * plan.total_steps * plan.total_gpus / 3600
    plan.assumptions += [
        f"time: mean prompt {c.mean_prompt_tokens} tokens, mean completion {c.mean_completion_fraction:g} x "
        f"max_completion_length = {mean_completion:.0f} tokens ({gen_tokens:,.0f} generated per step)",
        f"training at {c.train_mfu:.0%} of {c.peak_tflops:g} TFLOPS per GPU; "
        f"{per_token / P:.0f} x params FLOPs per token (forward, backward"
        + (", recompute" if args.gradient_checkpointing else "")
        + (", old log-probs for vLLM importance sampling" if old_logps else "")
        + (f", {stat_passes} forward pass(es) for the rewards' token statistics" if stat_passes else "") + ")",
        f"generation at {c.generation_mfu:.0%} of peak on {gen_gpus} GPU(s), and no faster than {waves} wave(s) x "
        f"max_completion_length x {c.decode_step_s * 1000:g} ms per decode step per rollout (the longest completion "
        "sets the pace; a wave is as many sequences as one vLLM instance's KV cache holds at once)",
        f"answer clustering at {c.cluster_answers_per_s:g} answers/s per training process (answers and guards on one "
        "CPU core)" + (f", plus the verifier judge's forward passes at {c.train_mfu:.0%} of peak"
                       + ("" if plan.judge.engine == "vllm" else f" / {FP32_SLOWDOWN:g} (fp32)")
                       if plan.judge is not None else ""),
        "generation and training do not overlap (TRL generates, then trains); evaluation and checkpoint saving "
        "are not counted",
    ]


def _rewards(plan: Plan, recipe) -> None:
    """The recipe's rewards as the registry finds them (empo.rewards.registry), and the token statistics they read."""
    from empo.rewards.registry import check_rewards

    sources = check_rewards(recipe.empo.reward_funcs, recipe.empo.reward_options, (recipe.path.parent,))
    plan.rewards = [f"{s.name} ({s.origin}; {'label-free' if s.traits.label_free else 'supervised'})"
                    for s in sources]
    plan.token_statistics = tuple(sorted({t for s in sources for t in s.traits.token_statistics}))


def find_judge_shape(recipe: Path, judge_model: str) -> tuple[ModelShape, Path] | None:
    """The judge's architecture: a local judge's ``config.json``, else ``judge_model_config.json`` in the recipe's
    model directory (beside ``model_config.json``) when its ``judge_model`` names this judge; None otherwise."""
    recipe = Path(recipe).resolve()
    local = Path(judge_model) / "config.json"
    if local.is_file():
        return ModelShape.from_file(local), local
    for candidate in (recipe.parent.parent / "judge_model_config.json", recipe.parent / "judge_model_config.json"):
        if candidate.is_file() and json.loads(candidate.read_text()).get("judge_model") == judge_model:
            return ModelShape.from_file(candidate), candidate
    return None


def _judge(plan: Plan, recipe) -> None:
    """The free-form judge beside each training process: the verifier's weights (and vLLM share) and its forward
    passes, counted when its architecture is known and it runs on the training GPU; said not counted otherwise."""
    from empo.clustering.judges import DEFAULT_JUDGE_MODEL

    e, c = recipe.empo, plan.cluster
    kind = "embedding" if e.clustering == "embedding" else e.entailment_judge
    model = e.judge_model or DEFAULT_JUDGE_MODEL[kind]
    found = find_judge_shape(recipe.path, model) if kind == "verifier" else None
    on_gpu = e.judge_device == "auto" or e.judge_device.startswith("cuda")
    if found is None or not on_gpu:
        if not on_gpu:
            why = "it runs on the CPU"
        elif kind != "verifier":
            why = "only the verifier judge is modelled"
        else:
            why = ("its architecture is unknown: put its config.json numbers, and judge_model, in "
                   f"{Path(recipe.path).resolve().parent.parent / 'judge_model_config.json'}")
        plan.assumptions.append(f"not counted: the {kind} judge {model} on {e.judge_device} ({why}) -- its weights "
                                "in every training process and its forward passes over each group's answer pairs")
        return
    shape, shape_file = found
    P = shape.params()
    G = plan.num_generations
    tokens = JUDGE_TEMPLATE_TOKENS + c.mean_prompt_tokens + 2 * JUDGE_PART_TOKENS
    load = JudgeLoad(model=model, engine=e.judge_engine, params=P, resident_gib={}, peak_gib={},
                     pairs_per_step=plan.prompts_per_step * G * (G - 1), tokens_per_pair=tokens)
    if e.judge_engine == "vllm":
        share = e.judge_gpu_memory_utilization * c.gpu_memory_gib
        weights = 2 * P / GiB
        kv = share - weights - 1.0
        if kv <= 0:
            raise PlanError(f"judge_gpu_memory_utilization {e.judge_gpu_memory_utilization:g} x "
                            f"{c.gpu_memory_gib:g} GiB = {share:.1f} GiB does not hold the judge {model}'s weights "
                            f"({weights:.1f} GiB in bf16) plus 1 GiB of buffers; raise it")
        load.kv_tokens = kv * GiB / shape.kv_bytes_per_token(2)
        load.resident_gib["verifier judge on vLLM (judge_gpu_memory_utilization x GPU)"] = share
    else:
        b = e.judge_batch_size or 16
        load.resident_gib["verifier judge weights (transformers, fp32)"] = 4 * P / GiB
        # one batch, no grad: a layer's widest tensors at once and the next token's logits (logits_to_keep=1)
        load.peak_gib["hidden states of one batch"] = b * tokens * (4 * shape.hidden_size
                                                                    + 2 * shape.intermediate_size) * 4 / GiB
        load.peak_gib["next-token logits (fp32)"] = b * shape.vocab_size * 4 / GiB
    plan.judge = load
    plan.assumptions.append(
        f"the verifier judge {model} ({P / 1e9:.2f} B, architecture from {shape_file}) on each training GPU "
        f"({'vLLM, bf16' if e.judge_engine == 'vllm' else 'transformers, fp32'}); at most {G} x {G - 1} directed pairs "
        f"per group (every answer its own answering part; equal parts and the guards' decisions need none), "
        f"~{tokens} tokens each ({JUDGE_TEMPLATE_TOKENS} of template + the mean prompt + two parts of "
        f"{JUDGE_PART_TOKENS}); groups shared out over the training processes (empo.clustering.groups)")


def _disk(plan: Plan, args, empo_args) -> None:
    """What the run writes: its checkpoints (those kept) and samples.jsonl (every logged step's completions)."""
    P, L = plan.params, plan.trainable_params
    per_checkpoint = 12 * L + 4 * L if plan.use_peft else (2 + 12) * P  # adapter + Adam / bf16 weights + fp32 states
    saves = (plan.total_steps or 0) // args.save_steps if args.save_strategy == "steps" and args.save_steps else 0
    kept = min(saves, args.save_total_limit) if args.save_total_limit else saves
    logged = (plan.total_steps or 0) / max(1, empo_args.log_samples_every)
    mean_completion = plan.cluster.mean_completion_fraction * plan.max_completion_length
    sample_bytes = plan.completions_per_step * (SAMPLE_BYTES_PER_TOKEN * mean_completion + SAMPLE_BYTES_OVERHEAD)
    plan.disk_gb = {f"checkpoints ({kept} kept x {per_checkpoint / 1e9:,.1f} GB)": kept * per_checkpoint / 1e9,
                    f"samples.jsonl (every {max(1, empo_args.log_samples_every)} step(s))": logged * sample_bytes / 1e9}
