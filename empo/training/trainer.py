"""EmpoTrainer: TRL's GRPOTrainer plus the entropy-threshold filter, EMPO metrics and logs.

It reuses TRL's generation, advantage computation and loss untouched, and overrides these hooks (the state they
pass on is explicit and checked: ``empo.training.batch_state``; a hook that reads another generation batch's state
raises ``BatchStateError``):

- ``_generate``: TRL's sampling; opens generation n with its prompt and completion ids.
- ``_calculate_rewards``: scores generation n -- the same completions, or it fails: builds its groups once
  (``empo.clustering.groups.gather_groups``: every process's answers in one collective, cut into groups of G, each
  clustered once with the trainer's clusterer), computes the per-token statistics some reward asked for
  (``token_statistics``), and calls the rewards through TRL's reward call in the contract of
  ``empo.rewards.contract``: the group view with every call, and **no gold column for a label-free reward**.
- ``_generate_and_score_completions``: after TRL scored generation n (and before its buffer is split into
  micro-batches), keeps a group only when delta_low < H < delta_high, from the same groups; with dynamic sampling,
  further rounds (``_dynamic_generation_batch``; each a generation batch of questions, or as many as the shortfall
  needs at the run's acceptance rate: ``RoundSizer``, its counts saved with each checkpoint), and the step's
  length, reward and entropy metrics are those of the groups that trained (every round's under ``sampled/``).
- ``compute_loss``: TRL's loss times the generation batch's filter scale (below).
- the optimizer's ``step``: skipped when no process had a kept token in the whole accumulation window
  (``StepGate``), so a batch whose groups were all filtered moves no weight (no weight decay, no Adam step). The
  learning-rate schedule still advances: it is a schedule over the run's steps, which ``max_steps``, checkpoints
  and logs count skipped ones among, so a decaying schedule ends where the run ends. The count of skipped steps is
  saved with each checkpoint and restored.

What the filter means: **training on a generation batch in which some groups are filtered gives the same update
as training on the generation batch that holds only its kept groups** (what a verl-style trainer that deletes
the dropped groups trains on). Precisely, the reference is TRL's loss on the kept-only batch with the same
processes and number of micro-batches and each kept completion in the same optimizer step; for every loss
accepted below, a step's update does not depend on which process or micro-batch of the step holds a completion,
so this reference is well defined whatever TRL's shuffle did. A dropped group's ``completion_mask`` rows and
advantages are zeroed, so it adds nothing to any sum; what remains is each loss's denominator, corrected per
loss type (``empo.training.filter.FILTER_NORMALISATION``):

- token-normalised losses (``dapo``, ``cispo``, ``vespo``) divide by ``num_items_in_batch``, which is
  recomputed over the kept tokens of all processes (as TRL does for ``mask_truncated_completions``);
- sequence-normalised losses (``grpo``, ``sapo``, ``luspo``: a mean over the micro-batch's sequences;
  ``dr_grpo``: sequences x max_completion_length) divide by a row count that still includes the dropped rows,
  so every micro-batch's loss is multiplied by all / kept sequences of the generation batch (all processes):
  the kept-only batch has that many times fewer rows per micro-batch, and each kept sequence's weight becomes
  1 / kept count, however unevenly the kept rows fell into micro-batches and processes;
- settings that normalise per micro-batch (``bnpo``, the entropy bonus, ``top_entropy_quantile``) or over
  the whole batch (``scale_rewards='batch'``) cannot be made exact by rescaling TRL's loss and are refused with
  the filter on (``empo.training.filter.check_filter_exact``, through ``empo.recipe.validate`` before the model loads).

This holds with gradient accumulation, several processes, ``steps_per_generation > 1`` (a generation batch
spanning several optimizer steps keeps TRL's generation-level normaliser, as TRL does for ``dapo``) and
``num_iterations > 1``. Not covered: a mixture-of-experts router loss (``router_aux_loss_coef``), which TRL adds
per micro-batch over all rows. The factor by which each kept completion's (sequence losses) or token's (token
losses) weight grows, all / kept, is logged per step as ``empo/loss_scale`` (1.0 when nothing was dropped,
and when nothing was kept: that step moves no weight).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from accelerate.utils import gather_object
from trl import GRPOTrainer

from empo.clustering.entropy import keep_group
from empo.clustering.groups import BatchGroups, gather_groups
from empo.io import JsonlAppender
from empo.rewards.contract import completion_text, guard, traits
from empo.training.batch_state import GenerationLedger, StepGate
from empo.training.filter import FILTER_NORMALISATION
from empo.training.pseudo_labels import sign_disagreement


class EmpoTrainer(GRPOTrainer):
    def __init__(self, *args, empo_args=None, clusterer=None, **kwargs):
        import inspect

        from empo.clustering.math_clusters import clusterer_from_args
        from empo.configs import EmpoArguments
        from empo.recipe import validate

        # GRPOTrainer's positional parameters by name, so what follows reads them however the caller passed them
        names = [n for n in inspect.signature(GRPOTrainer.__init__).parameters if n != "self"]
        kwargs.update(zip(names, args))
        rewards = kwargs.get("reward_funcs")
        rewards = rewards if isinstance(rewards, list) else [rewards] if rewards is not None else []
        # what the rewards are called with (empo.rewards.contract): a label-free reward never receives gold columns
        kwargs["reward_funcs"] = [guard(f) for f in rewards]
        self.empo_args = empo_args or EmpoArguments()
        training_args = kwargs.get("args")
        validate(self.empo_args, training_args, check_machine=False,  # the recipe's checks, for direct callers too
                 num_rewards=len(rewards))
        # the clusterer of the batch's groups (empo train gives the rewards the same object: a judge loads once)
        self._clusterer = clusterer or clusterer_from_args(self.empo_args)
        self._token_statistics = sorted({s for f in rewards for s in traits(f).token_statistics})
        self.generations = GenerationLedger()  # each generation batch's state between hooks (batch_state.py)
        self.step_gate = StepGate()  # each optimizer step's keep/skip decision
        if training_args is not None and training_args.use_vllm:
            from empo.training.vllm_sync import empo_vllm_generation

            with empo_vllm_generation(self.empo_args.vllm_enforce_eager):  # CPU-capable engine and weight sync
                super().__init__(**kwargs)
        else:
            super().__init__(**kwargs)
        self._sample_log = JsonlAppender(f"{self.args.output_dir}/samples.jsonl") if self.accelerator.is_main_process \
            else None
        self._refill = None  # dynamic sampling's question stream for the rounds after the first, and their sizes
        self._round_sizer = None
        if self.empo_args.dynamic_sampling:
            from empo.training.dynamic_sampling import RefillSampler, RoundSizer

            self._refill = RefillSampler(len(self.train_dataset), seed=self.args.seed + 1)
            self._round_sizer = RoundSizer(self.empo_args.sampling_round_size,
                                           self.args.generation_batch_size // self.num_generations,
                                           self.num_generations, self.accelerator.num_processes,
                                           self.empo_args.sampling_round_cap)

    # --- hooks -------------------------------------------------------------------------------------------------
    def _generate(self, prompts):
        generated = super()._generate(prompts)
        self.generations.open(generated[0], generated[1])  # prompt and completion ids: generation n opens
        return generated

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        # The one group analysis of this generation batch: the group rewards score these groups (``empo_group``
        # reaches them as a column of TRL's reward call), the filter and the logs below read them.
        batch = self.generations.to_score(completion_ids_list)
        g = self.num_generations if self.model.training else self.num_generations_eval
        groups = gather_groups([completion_text(c) for c in completions], inputs, self._clusterer, g)
        inputs = [dict(x, empo_group=ref) for x, ref in zip(inputs, groups.local_refs())]
        if self._token_statistics:  # some reward reads the policy's per-token values (empo.rewards.contract)
            stats = self.token_statistics(batch, self._token_statistics)
            inputs = [dict(x, token_stats=st) for x, st in zip(inputs, stats)]
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        batch.groups, batch.rewards = groups, rewards_per_func  # the rewards already gathered over processes by TRL
        return rewards_per_func

    def _scored_generation(self, inputs):
        """TRL's generation and scoring of ``inputs``, and the generation batch that call opened and scored."""
        serial = self.generations.serial + 1
        output = super()._generate_and_score_completions(inputs)
        return output, self.generations.scored(serial)

    def token_statistics(self, batch, wanted) -> list:
        """The hook that gives rewards the policy's per-token values (``token_stats``; :data:`empo.rewards.contract.
        TOKEN_STATISTICS`): one :class:`~empo.rewards.contract.TokenStats` per completion of this process, computed
        once per generation batch, without gradients, by the model that sampled it at TRL's sampling temperature.
        ``logps`` and ``entropies`` are TRL's own (``_get_per_token_logps_and_entropies``, the function its loss
        calls); ``self_certainty`` needs the whole next-token distribution, which TRL's fused head does not return, so
        it comes from one more forward pass over the same ids. Rewards come before the loss (its advantages are made
        from them), so no pass of the loss's can serve them."""
        from trl.models.utils import disable_gradient_checkpointing
        from trl.trainer.utils import pad

        from empo.rewards.contract import TokenStats

        prompt_ids, completion_ids_list = batch.take_ids()
        device, pad_id = self.accelerator.device, self._tokenizer.pad_token_id
        rows = [torch.tensor(ids, dtype=torch.long) for ids in prompt_ids]
        prompt = pad(rows, padding_value=pad_id, padding_side="left").to(device)
        prompt_mask = pad([torch.ones_like(r) for r in rows], padding_value=0, padding_side="left").to(device)
        rows = [torch.tensor(ids, dtype=torch.long) for ids in completion_ids_list]
        completion = pad(rows, padding_value=pad_id, padding_side="right").to(device)
        completion_mask = pad([torch.ones_like(r) for r in rows], padding_value=0, padding_side="right").to(device)
        input_ids, mask = torch.cat([prompt, completion], 1), torch.cat([prompt_mask, completion_mask], 1)
        keep, chunk = completion.size(1), self.args.per_device_train_batch_size
        values = {}
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            if {"logps", "entropies"} & set(wanted):
                values["logps"], values["entropies"], _ = self._get_per_token_logps_and_entropies(
                    self.model, input_ids, mask, keep, batch_size=chunk, compute_entropy="entropies" in wanted)
            if "self_certainty" in wanted:
                values["self_certainty"] = self._self_certainty(input_ids, mask, keep, chunk)
        lengths = [len(ids) for ids in completion_ids_list]
        return [TokenStats(**{k: v[i, :n].float().cpu() for k, v in values.items() if k in wanted})
                for i, n in enumerate(lengths)]

    def _self_certainty(self, input_ids, mask, keep: int, chunk: int) -> torch.Tensor:
        """KL(uniform || p) at each completion position, p at TRL's sampling temperature: -log V - mean_v log p_v."""
        out = []
        for start in range(0, input_ids.size(0), chunk):
            ids, m = input_ids[start:start + chunk], mask[start:start + chunk]
            with self.accelerator.autocast():
                logits = self.model(input_ids=ids, attention_mask=m).logits[:, -keep - 1:-1]
            logp = torch.log_softmax(logits.float() / self.temperature, dim=-1)
            out.append(-math.log(logp.shape[-1]) - logp.mean(dim=-1))
        return torch.cat(out)

    def _generate_and_score_completions(self, inputs):
        if self.model.training and self.empo_args.dynamic_sampling:
            return self._dynamic_generation_batch(inputs)
        output, generation = self._scored_generation(inputs)
        mode = "train" if self.model.training else "eval"
        batch = generation.groups
        kept = [self._in_band(gr) for gr in batch.groups]
        advantages = self.accelerator.gather(output["advantages"]).tolist()  # before the filter zeroes any
        if mode == "train":
            tokens = self.accelerator.gather(_loss_mask(output).sum()).sum().item()
            self._metrics[mode]["empo/generated_tokens"].append(float(tokens))  # the compute, as dynamic sampling's
            self._filter(output, batch, kept)
        self._log_group_metrics(mode, batch, kept, kept, advantages)
        if mode == "train" and self._sample_log is not None:
            self._write_samples(batch, kept, generation.rewards.tolist(), advantages)
        return output

    def _in_band(self, group) -> bool:
        """The entropy filter's decision: delta_low < H < delta_high (every group, with the filter off)."""
        ea = self.empo_args
        return not ea.entropy_filter or keep_group(group.entropy, group.size, ea.delta_low, ea.delta_high)

    def _accepted(self, group) -> bool:
        """Dynamic sampling's criterion: inside the entropy band, and a majority of at least min_majority_share."""
        return self._in_band(group) and group.majority_ratio >= self.empo_args.min_majority_share

    def _filter(self, output: dict, batch: BatchGroups, kept: list[bool]) -> None:
        """Take the dropped groups out of this process's rows, the loss and its normaliser (module docstring)."""
        g = batch.group_size
        device = output["completion_mask"].device
        all_tokens = output["num_items_in_batch"]
        if not all(kept):
            keep = torch.tensor([k for k in kept for _ in range(g)], device=device)
            keep = keep[batch.offset:batch.offset + batch.local_count]
            mask = output["completion_mask"]
            output["completion_mask"] = mask * keep.unsqueeze(1).to(mask.dtype)
            output["num_items_in_batch"] = self.accelerator.gather(_loss_mask(output).sum()).sum()
            output["advantages"] = output["advantages"] * keep.to(output["advantages"].dtype)
        self._set_loss_scale(output, all_rows=batch.size, kept_rows=sum(kept) * g, all_tokens=all_tokens.item())

    def _set_loss_scale(self, output: dict, all_rows: int, kept_rows: int, all_tokens: float) -> None:
        """Sequence-normalised losses: all rows / kept rows of the global generation batch (1 when none is kept: the
        loss is then zero and the optimizer step is skipped); a 0-dim tensor reaches every micro-batch. Logged as
        empo/loss_scale, with the token losses' all / kept tokens."""
        by_sequences = FILTER_NORMALISATION.get(self.loss_type) == "sequences"
        sequence_scale = all_rows / kept_rows if kept_rows else 1.0
        device = output["completion_mask"].device
        output["empo_loss_scale"] = torch.tensor(sequence_scale if by_sequences else 1.0, device=device)
        kept_tokens = output["num_items_in_batch"].item()
        token_scale = all_tokens / kept_tokens if kept_tokens else 1.0
        self._metrics["train"]["empo/loss_scale"].append(sequence_scale if by_sequences else token_scale)

    def _dynamic_generation_batch(self, inputs):
        """Dynamic sampling (``empo.training.dynamic_sampling``): generation rounds until the generation batch holds
        only accepted groups, or ``max_sampling_rounds`` are spent (rounds after the first sized by ``RoundSizer``);
        surplus accepted groups are dropped."""
        from empo.training import dynamic_sampling as ds

        ea, g = self.empo_args, self.num_generations
        need = self.args.generation_batch_size // g  # groups in a generation batch, over all processes
        pad_id = self._tokenizer.pad_token_id
        chosen, rejected, surplus, questions, tokens = [], [], 0, 0, 0
        figures = []  # per chosen group: (its analysis, completion lengths, rewards), for the trained-group metrics
        logged = {k: len(v) for k, v in self._metrics["train"].items()}  # what this step logged before its rounds
        started = time.perf_counter()
        for round_index in range(ea.max_sampling_rounds):
            if round_index:
                questions_wanted = self._round_sizer.size(need - len(chosen))
                inputs = ds.local_rows(self.train_dataset, self._refill.take(questions_wanted), g,
                                       self.accelerator.process_index, self.accelerator.num_processes)
            output, generation = self._scored_generation(inputs)
            batch = generation.groups
            rows = ds.gather_rows(self.accelerator, output, pad_id)
            lengths = gather_object([len(ids) for ids in generation.completion_ids])  # TRL's lengths, every process
            accepted = [self._accepted(gr) for gr in batch.groups]
            trained = []
            for qi, ok in enumerate(accepted):
                take = ok and len(chosen) < need
                surplus += ok and not take
                trained.append(take)
                (chosen if take else rejected if not ok else []).append(ds.group_rows(rows, qi, g))
                if take:
                    figures.append((batch.groups[qi], lengths[qi * g:(qi + 1) * g],
                                    generation.rewards[qi * g:(qi + 1) * g]))
            advantages = rows["advantages"].tolist()
            self._round_sizer.update(sum(accepted), len(batch.groups))
            questions += len(batch.groups)
            tokens += int(rows["completion_mask"].sum().item())
            self._log_group_metrics("train", batch, accepted, trained, advantages)
            if self._sample_log is not None:
                self._write_samples(batch, trained, generation.rewards.tolist(), advantages, round_index)
            if len(chosen) >= need:
                break
        training = chosen if len(chosen) == need or ea.dynamic_sampling_unfilled == "train" else []
        kept_groups = len(training)
        self._log_trained_figures(logged, figures[:kept_groups])
        # the rest of the batch: real rows (every forward pass stays well formed) that the loss does not see
        filler = [ds.masked(r) for r in (rejected + chosen)[:need - kept_groups]]
        rows = ds.concatenate(training + filler, pad_id)
        output = ds.process_slice(rows, self.accelerator.process_index, self.accelerator.num_processes)
        all_tokens = float(_loss_mask(rows).sum().item())
        output["num_items_in_batch"] = _loss_mask(rows).sum()
        self._set_loss_scale(output, all_rows=need * g, kept_rows=kept_groups * g, all_tokens=all_tokens)
        m = self._metrics["train"]
        m["empo/sampling_rounds"].append(float(round_index + 1))
        m["empo/questions_sampled"].append(float(questions))
        m["empo/groups_trained"].append(float(kept_groups))
        m["empo/groups_rejected"].append(float(len(rejected)))
        m["empo/groups_surplus"].append(float(surplus))
        m["empo/generated_tokens"].append(float(tokens))
        m["empo/sampling_seconds"].append(time.perf_counter() - started)
        m["empo/acceptance_rate"].append(self._round_sizer.acceptance_rate)  # the run's, so far (sizes the rounds)
        return output

    def _log_trained_figures(self, logged: dict, figures: list) -> None:
        """Dynamic sampling's step metrics say what trained: every generation round logged TRL's and empo's figures of
        all the groups it sampled; those move to ``sampled/<name>``, and ``<name>`` becomes the figure of the groups
        that trained (lengths, rewards, entropy, clusters, majority, no-answer rate: what label-free stopping reads).
        TRL's other per-generation figures (clipped ratio, terminated lengths, importance sampling) stay under
        ``sampled/`` only. A step with no trained group keeps the sampled figures under both names."""
        from trl.trainer.utils import nanstd

        m = self._metrics["train"]
        moved = [k for k in m if k.startswith(DS_SAMPLED_PREFIXES) or k in DS_SAMPLED_KEYS]
        for k in moved:
            rounds = m[k][logged.get(k, 0):]
            m[f"sampled/{k}"].extend(rounds)
            if figures:
                del m[k][logged.get(k, 0):]
        if not figures:
            return
        groups = [gr for gr, _, _ in figures]
        lengths = torch.tensor([n for _, ls, _ in figures for n in ls], dtype=torch.float32)
        rewards = torch.cat([r for _, _, r in figures])  # completions x reward functions
        m["completions/mean_length"].append(lengths.mean().item())
        m["completions/min_length"].append(lengths.min().item())
        m["completions/max_length"].append(lengths.max().item())
        for i, name in enumerate(self.reward_func_names):
            m[f"rewards/{name}/mean"].append(torch.nanmean(rewards[:, i]).item())
            m[f"rewards/{name}/std"].append(nanstd(rewards[:, i]).item())
        total = (rewards * self.reward_weights.to(rewards.device).unsqueeze(0)).nansum(dim=1)
        m["reward"].append(torch.nanmean(total).item())
        m["reward_std"].append(nanstd(total).item())
        g = self.num_generations
        m["frac_reward_zero_std"].append(sum(float(nanstd(total[i:i + g]).item() == 0.0)
                                             for i in range(0, len(total), g)) / len(groups))
        m["empo/entropy_mean"].append(sum(gr.entropy for gr in groups) / len(groups))
        m["empo/num_clusters_mean"].append(sum(gr.num_clusters for gr in groups) / len(groups))
        m["empo/majority_ratio_mean"].append(sum(gr.majority_ratio for gr in groups) / len(groups))
        m["empo/no_answer_rate"].append(sum(gr.num_missing for gr in groups) / (len(groups) * g))

    def _prepare_inputs(self, generation_batch):
        inputs = super()._prepare_inputs(generation_batch)
        if self.model.training:
            self.step_gate.micro_step(int(_loss_mask(inputs).sum().item()))  # the next optimizer step decides afresh
        return inputs

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        scale = inputs.get("empo_loss_scale")  # set in train mode only; see the module docstring
        return loss if scale is None else loss * scale

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        if getattr(optimizer, "_empo_guarded", False):
            return optimizer
        original_step = optimizer.step

        def step(*args, **kwargs):
            # Decided once per optimizer step: DeepSpeed's ZeRO optimizers call this torch optimizer's step once per
            # parameter group (stage 1/2) or sub-group (stage 3) inside engine.step(), which accelerate runs from
            # accelerator.backward. Skipping here (not engine.step) keeps DeepSpeed's own bookkeeping (gradient
            # zeroing, fp32->param copy of unchanged partitions) while moving no weight and no Adam state.
            # Under FSDP2 this same object is the optimizer: accelerate swaps the DTensor shards into its param groups
            # (fsdp2_switch_optimizer_parameters) and the Trainer's AcceleratedOptimizer.step calls this once per step.
            moves, decided = self.step_gate.allows_step(self._sum_over_processes)
            if decided:  # logged with this step (not at generation time, one step before the decision)
                self._metrics["train"]["empo/skipped_optimizer_steps"].append(float(self.step_gate.skipped))
            return original_step(*args, **kwargs) if moves else None

        optimizer.step = step
        optimizer._empo_guarded = True
        return optimizer

    def _sum_over_processes(self, value: float) -> float:
        return self.accelerator.reduce(torch.tensor(value, device=self.accelerator.device), reduction="sum").item()

    def _get_train_sampler(self, dataset=None):
        return EpochSeededSampler(super()._get_train_sampler(dataset))

    # --- checkpoints: the trainer's own state beside TRL's -------------------------------------------------------
    STATE_FILE = "empo_trainer_state.json"

    def _save_checkpoint(self, model, trial):
        """TRL's checkpoint, complete or not at all (``empo.training.checkpoints``): the space is checked first, the
        marker is written last (after every process wrote its part), and only then do old checkpoints rotate."""
        from empo.errors import CheckpointError
        from empo.io import atomic_write_json
        from empo.training import checkpoints

        run_dir = Path(self._get_output_dir(trial=trial))
        folder = run_dir / f"checkpoint-{self.state.global_step}"
        problem = checkpoints.space_problem(run_dir) if self.args.should_save else None
        fits = torch.tensor(0.0 if problem else 1.0, device=self.accelerator.device)
        if self.accelerator.reduce(fits, reduction="sum").item() < self.accelerator.num_processes:
            raise CheckpointError(f"{problem or 'the main process found too little disk space'}; nothing was "
                                  "written and the last complete checkpoint is kept: free space and run the same "
                                  "command to resume")
        limit, self.args.save_total_limit = self.args.save_total_limit, None  # rotation waits for the marker
        try:
            super()._save_checkpoint(model, trial)
            if self.args.should_save:  # what the run carries across steps beside TRL's state (docs/preemption.md)
                state = {"skipped_optimizer_steps": self.step_gate.skipped}
                if self._refill is not None:
                    state["refill_sampler"] = self._refill.state_dict()
                    state["round_sizer"] = self._round_sizer.state_dict()
                atomic_write_json(folder / self.STATE_FILE, state)
        except Exception as e:  # noqa: BLE001 - a full disk shows as OSError or as a native writer's own error
            full = checkpoints.disk_full_error(folder, e) if self.args.should_save else None
            if full is not None:
                raise full from e
            raise
        finally:
            self.args.save_total_limit = limit
        self.accelerator.wait_for_everyone()  # every process's files (RNG states, ZeRO/FSDP shards) are written
        if self.args.should_save:
            checkpoints.mark_complete(folder)
            checkpoints.rotate(run_dir, limit, protect=self.state.best_model_checkpoint)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        path = Path(checkpoint) / self.STATE_FILE if checkpoint else None
        if path is None or not path.is_file():
            return
        state = json.loads(path.read_text())
        self.step_gate.skipped = int(state.get("skipped_optimizer_steps", 0))
        if self._refill is not None:
            self._refill.load_state_dict(state["refill_sampler"])
            if "round_sizer" in state:  # checkpoints from before round sizing: every round a generation batch
                self._round_sizer.load_state_dict(state["round_sizer"])

    # --- logging -----------------------------------------------------------------------------------------------
    def _log_group_metrics(self, mode, batch, kept, trained, advantages):
        """``kept``: the groups the filter (or dynamic sampling's criterion) accepts; ``trained``: those in the loss."""
        groups, golds, g = batch.groups, batch.golds, batch.group_size
        answers = [a for gr in groups for a in gr.answers]
        m = self._metrics[mode]
        m["empo/entropy_mean"].append(sum(gr.entropy for gr in groups) / len(groups))
        m["empo/entropy_max_possible"].append(math.log(g))
        m["empo/kept_fraction"].append(sum(kept) / len(kept))
        m["empo/num_clusters_mean"].append(sum(gr.num_clusters for gr in groups) / len(groups))
        m["empo/majority_ratio_mean"].append(sum(gr.majority_ratio for gr in groups) / len(groups))
        m["empo/no_answer_rate"].append(sum(a is None for a in answers) / len(answers))
        # when grading, not the model, shapes the reward (every process's clustering of this batch)
        m["empo/groups_over_budget"].append(float(batch.groups_over_budget))
        m["empo/math_timeouts"].append(float(batch.math_timeouts))
        if self.empo_args.clustering != "math":  # the free-form judge's load (empo launch models it)
            m["empo/judge_pairs"].append(float(batch.judge_pairs))
        sync = getattr(getattr(self, "vllm_generation", None), "sync_seconds", None)
        if mode == "train" and sync:
            m["empo/vllm_sync_seconds"].append(sync[-1])
        if all(x is not None for x in golds):  # monitoring only: never reaches a label-free reward
            grades = batch.grades()  # once per group in the job, under the group budget
            m["empo/majority_accuracy"].append(sum(majority for _, majority in grades) / len(groups))
            m["empo/sample_accuracy"].append(sum(sum(samples) for samples, _ in grades) / len(answers))
            # what the trained groups taught (empo.training.pseudo_labels): is their majority right, and how often does
            # the reward's advantage point against the gold reward's
            trained = [(qi, grades[qi]) for qi, k in enumerate(trained) if k]
            if trained:
                m["empo/pseudo_label_accuracy"].append(sum(majority for _, (_, majority) in trained) / len(trained))
                counts = [sign_disagreement(advantages[qi * g:(qi + 1) * g], samples) for qi, (samples, _) in trained]
                pairs = sum(p for _, p in counts)
                if pairs:
                    m["empo/gold_sign_disagreement"].append(sum(d for d, _ in counts) / pairs)

    def _write_samples(self, batch, kept, rewards, advantages, round_index: int = 0):
        """One row per question group and generation step: completions, answers, clusters, rewards, and whether the
        group trained (``kept``); with dynamic sampling, the generation round that sampled it."""
        step, g, ids, texts, golds = self.state.global_step, batch.group_size, batch.ids, batch.texts, batch.golds
        if step % self.empo_args.log_samples_every:
            return
        for qi, (gr, k) in enumerate(zip(batch.groups, kept)):
            sl = slice(qi * g, (qi + 1) * g)
            self._sample_log.write({
                "step": step, "round": round_index, "id": ids[qi * g], "entropy": gr.entropy, "kept": k,
                "completions": texts[sl], "answers": list(gr.answers), "cluster_ids": list(gr.cluster_ids),
                "rewards": {name: [r[j] for r in rewards[sl]] for j, name in enumerate(self.reward_func_names)},
                "advantages": advantages[sl],
                "majority_answer": gr.majority_answer, "gold": golds[qi * g],
            })


class EpochSeededSampler:
    """TRL's RepeatSampler, with ``set_epoch`` (which accelerate calls at every epoch): epoch e's order is drawn from
    seed + e. TRL's sampler draws epoch e's order from one generator advanced e times in this process, so a run
    resumed in epoch 1 or later would replay epoch 0's order; epoch 0's order is TRL's."""

    def __init__(self, sampler):
        self.sampler = sampler

    def set_epoch(self, epoch: int) -> None:
        if getattr(self.sampler, "shuffle", False) and self.sampler.seed is not None:
            self.sampler.generator.manual_seed(self.sampler.seed + epoch)

    def __iter__(self):
        return iter(self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


#: TRL's and empo's per-generation figures that dynamic sampling logs per round (EmpoTrainer._log_trained_figures)
DS_SAMPLED_PREFIXES = ("completions/", "rewards/", "sampling/", "tools/")
DS_SAMPLED_KEYS = ("reward", "reward_std", "frac_reward_zero_std", "empo/entropy_mean", "empo/num_clusters_mean",
                   "empo/majority_ratio_mean", "empo/no_answer_rate")


def _loss_mask(batch: dict) -> torch.Tensor:
    """The tokens TRL's loss counts: the completion mask, times the tool mask in multi-turn batches."""
    mask = batch["completion_mask"]
    return mask if "tool_mask" not in batch else mask * batch["tool_mask"]
