"""``empo launch``: from a recipe to a running multi-GPU job, with a plan first.

    empo launch recipes/Qwen2.5-Math-7B/empo/config_numina20k.yaml --gpus-per-node 8 --dry-run
    empo launch RECIPE --gpus-per-node 8 --nodes 2 --slurm            # writes and submits a Slurm script
    empo launch RECIPE --gpus-per-node 8 -- --max_steps 10           # recipe overrides after --

The plan (:mod:`empo.launch.plan`) is printed first; a recipe that cannot run stops there with one message.
The commands (:mod:`empo.launch.commands`) are TRL's ``trl vllm-serve`` and ``accelerate launch -m empo.train``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from empo.errors import ConfigError, PlanError, PreflightError
from empo.launch import preflight
from empo.launch.commands import SERVER_START_TIMEOUT_S, VLLM_PORT, build_commands, render_shell, render_slurm
from empo.launch.plan import Cluster, Plan, accelerate_config_path, make_plan
from empo.launch.preflight import CHECKS

__all__ = ["Cluster", "Plan", "PlanError", "make_plan", "build_commands", "add_parser"]


def add_parser(sub) -> None:
    d = Cluster()
    p = sub.add_parser("launch", help="Plan (memory, batch, steps, GPU-hours) and launch a recipe on GPUs with "
                                      "accelerate and TRL's vLLM server/colocate mode, locally or through Slurm.")
    p.add_argument("recipe", help="recipe YAML (e.g. recipes/Qwen2.5-Math-7B/empo/config_numina20k.yaml)")
    p.add_argument("--gpus-per-node", type=int, required=True)
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--vllm", choices=["server", "colocate"], default=None,
                   help="override the recipe's vllm_mode (server: dedicated vLLM GPUs; colocate: inside training)")
    p.add_argument("--gpu-memory", type=float, default=d.gpu_memory_gib, help="GiB per GPU (default: %(default)s)")
    p.add_argument("--dataset-rows", type=int, default=None,
                   help="training questions, when the dataset file is not on this machine (default: count it, "
                        "else the recipe's dataset_rows)")
    p.add_argument("--slurm", action="store_true", help="write <output_dir>/launch.slurm and submit it with sbatch")
    p.add_argument("--dry-run", action="store_true", help="print the plan, the preflight and the commands; start "
                                                           "nothing")
    p.add_argument("--json", action="store_true", help="print the plan (with the preflight and the commands) as one "
                                                       "JSON object")
    p.add_argument("--skip-preflight", action="append", default=[], metavar="CHECK",
                   help=f"launch even though this preflight check fails (one of {', '.join(CHECKS)}; repeatable)")
    t = p.add_argument_group("time estimate (assumptions printed with the plan)")
    t.add_argument("--peak-tflops", type=float, default=d.peak_tflops, help="dense bf16 TFLOPS per GPU")
    t.add_argument("--train-mfu", type=float, default=d.train_mfu)
    t.add_argument("--generation-mfu", type=float, default=d.generation_mfu)
    t.add_argument("--mean-prompt-tokens", type=int, default=d.mean_prompt_tokens)
    t.add_argument("--mean-completion-fraction", type=float, default=d.mean_completion_fraction,
                   help="mean completion length as a fraction of max_completion_length")
    p.set_defaults(func=run_launch, overrides=[])  # recipe overrides: everything after '--' (empo.cli)


def run_launch(args) -> int:
    if args.nodes < 1 or args.gpus_per_node < 1:
        raise PlanError("--nodes and --gpus-per-node must be at least 1")
    cluster = Cluster(nodes=args.nodes, gpus_per_node=args.gpus_per_node, gpu_memory_gib=args.gpu_memory,
                      peak_tflops=args.peak_tflops, train_mfu=args.train_mfu, generation_mfu=args.generation_mfu,
                      mean_prompt_tokens=args.mean_prompt_tokens,
                      mean_completion_fraction=args.mean_completion_fraction)
    from empo.recipe import load_recipe

    try:  # read once: the plan, the commands and the Slurm script all use this parse
        recipe = load_recipe(args.recipe, args.overrides, any_machine=True, check_machine=False)
    except ConfigError as e:
        raise PlanError(str(e)) from None
    unknown = sorted(set(args.skip_preflight) - set(CHECKS))
    if unknown:
        raise ConfigError(f"--skip-preflight {', '.join(unknown)}: not a preflight check ({', '.join(CHECKS)})")
    plan = make_plan(recipe, cluster, vllm_mode=args.vllm, dataset_rows=args.dataset_rows)
    model_args = recipe.model
    commands = build_commands(plan, args.recipe, str(accelerate_config_path(recipe.empo.accelerate_config)),
                              list(args.overrides),
                              vllm_revision=model_args.model_revision if model_args.model_revision != "main" else None)
    if plan.cluster.nodes > 1 and not (args.slurm or args.dry_run or args.json):  # started by hand on each node
        need = ["NODE_RANK", "MASTER_ADDR"] + (["VLLM_HOST"] if plan.layout.server_dedicated_node else [])
        missing = [k for k in need if k not in os.environ]
        if missing:
            raise PlanError(f"a {plan.cluster.nodes}-node run started by hand needs {', '.join(missing)} set on "
                            f"every node (or use --slurm)")
    checks = preflight.run_checks(recipe, plan, skip=set(args.skip_preflight))
    failed = [c for c in checks if not c.ok]
    if args.json:
        import json

        print(json.dumps({**plan.to_json(), "commands": [c.shell() for c in commands],
                          "preflight": preflight.as_json(checks)}, indent=2))
        return 0 if args.dry_run or not failed else 2
    print(plan.format())
    print("\n# preflight (this machine)\n" + "\n".join(c.line() for c in checks))
    if failed and not args.dry_run:
        raise PreflightError("preflight failed, nothing started: " + "; ".join(f"{c.check}: {c.message}"
                                                                               for c in failed)
                             + " (--skip-preflight CHECK to launch anyway)")
    if args.slurm:
        from empo.io import atomic_write_text

        script = render_slurm(plan, commands, job_name=Path(recipe.training.output_dir).name)
        path = Path(recipe.training.output_dir) / "launch.slurm"
        print(f"\n# Slurm script ({'not written: --dry-run' if args.dry_run else path})\n{script}")
        if args.dry_run:
            return 0
        atomic_write_text(path, script)
        return subprocess.run(["sbatch", str(path)], check=False).returncode
    print("\n# commands\n" + render_shell(commands))
    if args.dry_run:
        return 0
    return _run_here(plan, commands)


def wait_for_server(server: subprocess.Popen, host: str, port: int = VLLM_PORT,
                    timeout: float = SERVER_START_TIMEOUT_S) -> None:
    """Wait until the vLLM server answers /health/; one line if it dies or does not come up in ``timeout`` s."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise PreflightError(f"the vLLM server exited with status {server.returncode} before it came up "
                                 "(its log is above)")
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/health/", timeout=5) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(5)
    raise PreflightError(f"the vLLM server on {host}:{port} did not answer /health/ within {timeout:g} s")


def _run_here(plan: Plan, commands) -> int:
    """Run this node's commands: the server (if it lives here) in the background, then training."""
    rank = int(os.environ.get("NODE_RANK", "0"))
    mine = [c for c in commands if c.nodes == "all" or (c.nodes == "0" and rank == 0) or (c.nodes == "1-" and rank > 0)]
    server = None
    try:
        for cmd in mine:
            print(f"[empo launch] {cmd.role}: {cmd.shell()}", file=sys.stderr)
            if cmd.role == "vllm-server":
                server = subprocess.Popen(["bash", "-c", "exec " + cmd.shell()])
                if plan.layout.server_dedicated_node:
                    return server.wait()  # node 0 only serves
                wait_for_server(server, "127.0.0.1")  # a cold start can outlast TRL client's patience
            else:
                return subprocess.run(["bash", "-c", cmd.shell()], check=False).returncode
        return 0
    finally:
        if server is not None and server.poll() is None:
            server.terminate()
            server.wait(timeout=60)
