"""The command lines ``empo launch`` runs (or prints, or writes into a Slurm script) for a :class:`Plan`.

- server mode, one node: ``trl vllm-serve`` on the first ``vllm_tensor_parallel_size`` GPUs, ``accelerate launch``
  on the rest (``CUDA_VISIBLE_DEVICES`` splits them);
- server mode, several nodes: node 0 serves on all its GPUs (tensor x data parallel), the other nodes train;
- colocate (or no vLLM): ``accelerate launch`` on every GPU of every node.

Multi-node commands use ``$NODE_RANK``, ``$MASTER_ADDR`` and ``$VLLM_HOST``; the Slurm template sets them.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from empo.launch.plan import Plan

SLURM_TEMPLATE = Path(__file__).with_name("empo_launch.slurm")
VLLM_PORT = 8000
#: Seconds a cold vLLM server may take to come up (model download, compilation); TRL's client waits 240 by default.
SERVER_START_TIMEOUT_S = 1200
#: Seconds before the time limit at which a Slurm job is warned to save and stop (--signal=B:USR1@...).
PREEMPTION_WARNING_S = 300
MAIN_PORT = 29500


@dataclass
class Command:
    role: str                    # "vllm-server" or "train"
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    nodes: str = "all"           # "0", "1-" (from node 1 on) or "all"

    def shell(self) -> str:
        env = " ".join(f"{k}={v}" for k, v in self.env.items())
        args = " ".join(a if a.startswith("$") else shlex.quote(a) for a in self.argv)
        return f"{env} {args}".strip()


def _gpus(first: int, count: int) -> str:
    return ",".join(str(i) for i in range(first, first + count))


def build_commands(plan: Plan, recipe: str, accelerate_config: str, overrides: list[str],
                   vllm_revision: str | None = None) -> list[Command]:
    lo = plan.layout
    multi = lo.trainer_nodes > 1
    train = ["accelerate", "launch", "--config_file", accelerate_config, "--num_processes", str(lo.trainers),
             "--num_machines", str(lo.trainer_nodes)]
    if multi:
        rank = "$((NODE_RANK - 1))" if lo.server_dedicated_node else "$NODE_RANK"
        train += ["--machine_rank", rank, "--main_process_ip", "$MASTER_ADDR"]
    else:
        train += ["--machine_rank", "0"]
    train += ["--main_process_port", str(MAIN_PORT), "-m", "empo.train", "--config", recipe]
    commands = []
    if lo.vllm_mode == "server":
        # The server generates with the policy and accepts weight pushes: never on every interface. One node: loopback
        # (the trainers connect to 127.0.0.1); several: node 0's cluster address ($VLLM_HOST), which the trainers use.
        host = "$VLLM_HOST" if lo.server_dedicated_node else "127.0.0.1"
        serve = ["trl", "vllm-serve", "--model", plan.model, "--host", host,
                 "--tensor_parallel_size", str(lo.tensor_parallel),
                 "--data_parallel_size", str(lo.data_parallel),
                 "--gpu_memory_utilization", str(plan.vllm_gpu_memory_utilization),
                 "--max_model_len", str(plan.max_model_length), "--port", str(VLLM_PORT)]
        if vllm_revision:
            serve += ["--revision", vllm_revision]
        commands.append(Command("vllm-server", serve, {"CUDA_VISIBLE_DEVICES": _gpus(0, lo.server_gpus)}, nodes="0"))
        train += ["--use_vllm", "true", "--vllm_mode", "server", "--vllm_server_host", host,
                  "--vllm_server_port", str(VLLM_PORT), "--vllm_server_timeout", str(SERVER_START_TIMEOUT_S)]
        env = {} if lo.server_dedicated_node else {"CUDA_VISIBLE_DEVICES": _gpus(lo.server_gpus, lo.trainers)}
        commands.append(Command("train", train + overrides, env, nodes="1-" if lo.server_dedicated_node else "0"))
    else:
        if lo.vllm_mode == "colocate":
            train += ["--vllm_mode", "colocate"]
        commands.append(Command("train", train + overrides, {}, nodes="all" if multi else "0"))
    return commands


def render_shell(commands: list[Command]) -> str:
    lines = []
    for cmd in commands:
        where = {"0": "node 0", "1-": "nodes 1.. (NODE_RANK>=1)", "all": "every node"}[cmd.nodes]
        suffix = " &" if cmd.role == "vllm-server" else ""
        lines.append(f"# {cmd.role} on {where}\n{cmd.shell()}{suffix}")
    return "\n".join(lines)


def render_slurm(plan: Plan, commands: list[Command], job_name: str, template: Path = SLURM_TEMPLATE) -> str:
    """Fill ``empo_launch.slurm`` (beside this file): one task per node; the server (if any) starts first on node 0."""
    lo = plan.layout
    server = next((c for c in commands if c.role == "vllm-server"), None)
    train = next(c for c in commands if c.role == "train")
    if server is None:
        server_block = "# no vLLM server (colocated vLLM or transformers generation)"
        train_nodes, first = plan.cluster.nodes, 0
    elif lo.server_dedicated_node:
        server_block = (f'srun --nodes=1 --ntasks=1 --nodelist="${{NODES[0]}}" '
                        f'bash -c {shlex.quote(server.shell())} &\n'
                        "wait_for_vllm \"${NODES[0]}\"")
        train_nodes, first = plan.cluster.nodes - 1, 1
    else:
        server_block = f"{server.shell()} &\nwait_for_vllm 127.0.0.1"
        train_nodes, first = 1, 0
    # The training is one srun step (srun passes the script's SIGTERM on to its tasks); `exec` makes the launcher the
    # task itself, so the signal reaches torchrun, which forwards it to every training process.
    task = f"export NODE_RANK=$((SLURM_PROCID + {first})) && exec env {train.shell()}"
    body = (f"srun --nodes={train_nodes} --ntasks={train_nodes} --ntasks-per-node=1 --relative={first} "
            f"bash -c {shlex.quote(task)}")
    text = template.read_text()
    for key, value in {"JOB_NAME": job_name, "NODES": str(plan.cluster.nodes),
                       "GPUS_PER_NODE": str(plan.cluster.gpus_per_node), "VLLM_PORT": str(VLLM_PORT),
                       "MASTER_NODE": str(first), "OUTPUT_DIR": plan.output_dir,
                       "WARN_SECONDS": str(PREEMPTION_WARNING_S), "SHUTDOWN_SECONDS": str(PREEMPTION_WARNING_S - 30),
                       "SERVER_BLOCK": server_block, "TRAIN_BLOCK": body, "PLAN": _comment(plan.format())}.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def _comment(text: str) -> str:
    return "\n".join("# " + line for line in text.splitlines())
