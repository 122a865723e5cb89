"""The per-GPU memory model of a training process, term by term, with where each number comes from.

Memory is what stays (the *resident* terms: weights, gradients and optimizer states as the sharding keeps them,
the colocated vLLM share, CUDA's own) plus the largest of the passing peaks, which never coincide:

* ``forward/backward``: activations, TRL's log-prob head;
* ``generation (HF generate)``: without vLLM, the KV cache of the process's share of a rollout (TRL generates it in
  one ``generate()`` call) and one decode step's fp32 logits;
* ``optimizer step``: what ZeRO-3 holds at the step beyond DeepSpeed's estimate;
* ``weight sync``: under ZeRO-3 with LoRA, TRL gathers the whole model before merging the adapter for vLLM.

Sources (TRL 1.16, DeepSpeed 0.19, accelerate 1.15, torch 2.13):

* DeepSpeed ZeRO-3 model states: ``estimate_zero3_model_states_mem_needs`` (stage3.py), no offload:
  ``4 x largest_layer + 18 x params / gpus`` bytes; ZeRO-2: ``estimate_zero2_model_states_mem_needs``
  (stage_1_and_2.py), ``2 x params + 18 x params / gpus`` (18 = fp16 grads 2 + fp32 grads 4 + fp32 params 4 + Adam
  8). ``tests/test_launch_memory.py`` checks these terms against DeepSpeed's functions. At the optimizer step
  ZeRO-3 also holds its bf16 parameter partition (2 B/param/gpus) that the estimator leaves out (a separate term).
* DeepSpeed's reduce bucket: ``reduce_bucket_size`` 5e8 elements in bf16 (accelerate's YAML configs set none).
* FSDP2 with bf16 mixed precision: accelerate upcasts trainable parameters to fp32 masters; gradients and Adam
  moments follow: 16 B/param/gpus, plus one wrapped layer gathered (bf16) ahead and the unsharded output layer.
* torch AdamW under DDP: moments in the parameter dtype.
* LoRA: the base stays in its dtype (sharded under ZeRO-3/FSDP), the adapters and their Adam state in fp32.
* TRL's log-probs: a chunked, fused LM head (``trl.kernels.chunked_logprob``) that never builds the [tokens x vocab]
  logits: a tile of min(tokens, 4096) x 32768 in bf16 and the completion tokens' hidden states; in the backward, an
  fp32 [tokens x hidden] gradient and, when the head trains (full fine-tuning), an fp32 [vocab x hidden] weight
  gradient plus its bf16 copy. LoRA's frozen head has no weight gradient.
* Activations: one micro-batch of ``b`` sequences of ``T`` tokens, the Qwen2 layer's saved tensors as
  :func:`activations` counts them (scripts/plan_memory_cpu.py checks the count against measured steps); with
  gradient checkpointing, one hidden state per layer plus one layer's recompute. Flash attention: no T^2 term.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GiB = 1024**3
DS_REDUCE_BUCKET_ELEMENTS = 5e8          # DeepSpeed's default reduce_bucket_size
HEAD_TOKEN_CHUNK, HEAD_VOCAB_CHUNK = 4096, 32768  # trl/trainer/utils.py: the fused log-prob head's tile
# trl/kernels/chunked_logprob.py, _backward_tile (no Triton): the tile, y, z, log p, p, grad, the target mask (bool,
# a quarter) and two temporaries of ``grad += g * (is_target.float() - p)`` are alive together
FALLBACK_LIVE_TILES = 8.25
CUDA_FIXED_GIB = 3.0                     # CUDA context and NCCL buffers
FRAGMENTATION = 0.10                     # allocator fragmentation, a share of the rest


@dataclass
class MemoryModel:
    """GiB per training GPU: resident terms, and the passing peaks by phase."""

    resident: dict[str, float] = field(default_factory=dict)
    phases: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def peak_phase(self) -> str | None:
        return max(self.phases, key=lambda p: sum(self.phases[p].values()), default=None)

    @property
    def total(self) -> float:
        peak = sum(self.phases[self.peak_phase].values()) if self.phases else 0.0
        return sum(self.resident.values()) + peak

    def components(self) -> dict[str, float]:
        """Every term, flat (phase terms named with their phase)."""
        return {**self.resident, **{f"{phase}: {k}": v for phase, terms in self.phases.items()
                                    for k, v in terms.items()}}


def deepspeed_model_states(stage: int, params: int, largest_layer: int, gpus: int) -> float:
    """DeepSpeed's own estimate of the model states per GPU in bytes (no offload), stage 2 or 3."""
    if stage == 3:
        return 4 * largest_layer + 18 * params / gpus
    if stage == 2:
        return 2 * params + 18 * params / gpus
    raise ValueError(f"DeepSpeed's estimators cover ZeRO stages 2 and 3, not {stage}")


def model_states(kind: str, params: int, trainable: int, lora: bool, gpus: int, weight_bytes: int,
                 largest_layer: int, offload_optimizer: bool = False, offload_params: bool = False) -> dict[str, float]:
    """Weights, gradients and optimizer states per GPU, in bytes, by term."""
    if lora:
        shard = gpus if kind in ("zero3", "fsdp") else 1
        return {"frozen base weights": 0.0 if offload_params else params * weight_bytes / shard,
                "LoRA weights + grads + Adam (fp32)": trainable * 16 / shard}
    if kind in ("zero2", "zero3") and not (offload_optimizer or offload_params):
        stage = int(kind[-1])
        return {f"model states (ZeRO-{stage}, DeepSpeed's estimate)":
                deepspeed_model_states(stage, params, largest_layer, gpus)}
    if kind.startswith("zero"):  # ZeRO-1, or offloaded: what stays on the GPU
        stage = int(kind[-1])
        states = 0.0 if offload_optimizer else 16 * params / (gpus if stage >= 1 else 1)
        return {"weights (bf16)": 0.0 if offload_params else 2 * params / (gpus if stage == 3 else 1),
                "gradients (bf16)": 2 * params / (gpus if stage >= 2 else 1), "fp32 master + Adam": states}
    if kind == "fsdp":  # accelerate upcasts trainable parameters to fp32 masters under bf16 mixed precision
        return {"weights + grads + Adam (fp32 shards, FSDP2)": 16 * params / gpus}
    return {"weights": params * weight_bytes, "gradients": params * weight_bytes,
            "Adam moments (parameter dtype)": 2 * params * weight_bytes}


def logprob_head(tokens: int, hidden: int, vocab: int, head_trains: bool, compute_bytes: int = 2,
                 weight_copy_bytes: int = 2, live_tiles: float = 1) -> dict[str, float]:
    """TRL's fused, chunked log-prob head for one micro-batch of ``tokens`` scored positions, in bytes: forward and
    backward together. On CUDA (Triton) only the completion tokens are scored, in bf16, and the kernels rewrite the
    one tile in place; elsewhere every position of the sequences is scored, in the hidden states' dtype
    (``compute_bytes``), and TRL's torch fallback holds ``FALLBACK_LIVE_TILES`` tile-sized tensors at its backward's
    peak (``live_tiles``). A trained head's fp32 weight gradient is copied back to the weight's dtype
    (``weight_copy_bytes``: 0 when that is fp32)."""
    tile = min(tokens, HEAD_TOKEN_CHUNK) * HEAD_VOCAB_CHUNK
    terms = {"log-prob head: tile + hidden states": live_tiles * tile * compute_bytes + tokens * hidden * compute_bytes,
             "log-prob head: hidden-state gradient (fp32)": tokens * hidden * 4}
    if head_trains:
        terms["log-prob head: weight gradient (fp32 + copy)"] = vocab * hidden * (4 + weight_copy_bytes)
    return terms


def activations(layers: int, batch: int, seq_len: int, hidden: int, intermediate: int, kv_hidden: int,
                act_bytes: int, checkpointing: bool, lora_rank: int = 0, lora_modules: int = 0) -> float:
    """Bytes of activations kept for the backward of one micro-batch of a Qwen2/Llama decoder (SwiGLU MLP, RMSNorm,
    grouped-query attention through a flash kernel: no [T x T] scores), counted with torch's saved-tensor hooks on
    the transformers 5 layer, per token and layer: the three MLP products and the down projection's input (4 x
    intermediate), q, k, v and the attention output, the norms' inputs and the linears' inputs (6 x hidden + 2 x
    the k/v width), and, in full fine-tuning, the two norms' normalised states their weights' gradients need
    (2 x hidden); with LoRA, each adapted module's rank-r intermediate. Korthikanti et al.'s 34 x hidden bytes
    (GELU MLP) undercounts this architecture by half. With gradient checkpointing: each layer's input hidden state
    plus one layer recomputed during the backward."""
    per_token = 4 * intermediate + 6 * hidden + 2 * kv_hidden
    per_token += lora_rank * lora_modules if lora_rank else 2 * hidden
    per_layer = batch * seq_len * per_token * act_bytes
    if checkpointing:
        return layers * batch * seq_len * hidden * act_bytes + per_layer
    return layers * per_layer


def finish(model: MemoryModel) -> MemoryModel:
    """Add CUDA's fixed share and the allocator's fragmentation."""
    model.resident["CUDA context, NCCL"] = CUDA_FIXED_GIB
    model.resident["allocator fragmentation (10% of the rest)"] = FRAGMENTATION * (model.total - CUDA_FIXED_GIB)
    return model
