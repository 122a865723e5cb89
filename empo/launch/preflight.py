"""Preflight: what a machine must have before a planned launch starts, one line per check.

``empo launch`` runs every check before it starts anything (``--dry-run`` prints them with the plan; a failed check
refuses the launch unless ``--skip-preflight CHECK`` names it); ``empo train`` under a multi-process launcher runs
the checks that concern its own node. Checks:

* ``integrations``: every ``report_to`` integration imports (wandb comes with ``pip install "empo[wandb]"``), and
  wandb has a key (``wandb login``, ``WANDB_API_KEY``) or runs offline (``WANDB_MODE=offline``);
* ``versions``: the installed torch, transformers, TRL, peft, accelerate, vLLM and DeepSpeed against the one table of
  supported sets, which is empo's own requirements (``pyproject.toml``, read from the installed package's metadata;
  vLLM's is the ``vllm`` extra's pin, inside the range TRL declares); fails where TRL's private surface differs from
  empo's, and says (without failing) which versions are outside the tested ranges (:mod:`empo.versions`);
* ``cuda``: CUDA usable, with the GPUs per node the plan needs;
* ``driver``: the NVIDIA driver supports the CUDA version the installed torch wheels were built for;
* ``gpu_memory``: free memory on each GPU against the plan's per-GPU need;
* ``compiler``: a C compiler on PATH (Triton, behind TRL's log-prob head on CUDA, and vLLM compile kernels at the
  first step);
* ``dataset``: the training data is readable here (a local or shipped file; a hub dataset in the cache when offline);
* ``output_dir``: writable, and no other process holds its lock.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from empo.reporting import reporting_problem

CHECKS = ("integrations", "versions", "cuda", "driver", "gpu_memory", "compiler", "dataset", "output_dir")
GPU_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "vllm", "deepspeed")


@dataclass
class Check:
    check: str
    ok: bool
    message: str

    def line(self) -> str:
        return f"  [{'ok' if self.ok else 'FAILED'}] {self.check}: {self.message}"


def integrations(report_to) -> Check:
    problem = reporting_problem(report_to)
    names = [r for r in (report_to or []) if r not in ("none", "all")]
    return Check("integrations", problem is None,
                 problem or (f"{', '.join(names)} installed" if names else "report_to none: metrics.jsonl only"))


def supported_sets() -> dict[str, str]:
    """Package -> the version specifier empo requires (its metadata: pyproject.toml's dependencies and the vllm and
    deepspeed extras)."""
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement

    try:
        lines = requires("empo") or []
    except PackageNotFoundError:  # a checkout on PYTHONPATH: read pyproject.toml itself
        import tomllib

        project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
        extras = project.get("optional-dependencies", {})
        lines = project["dependencies"] + [f"{r}; extra == '{k}'" for k, rs in extras.items() for r in rs]
    out = {}
    for line in lines:
        req = Requirement(line)
        extra = re.search(r'extra == "([^"]+)"', str(req.marker or "").replace("'", '"'))
        if req.name in GPU_PACKAGES and (extra is None or extra.group(1) in ("vllm", "deepspeed")):
            out.setdefault(req.name, str(req.specifier))
    return out


def versions(needs_vllm: bool, needs_deepspeed: bool) -> Check:
    from importlib.metadata import PackageNotFoundError, version

    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    wrong, have = [], []
    for name, spec in supported_sets().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            if (name == "vllm" and needs_vllm) or (name == "deepspeed" and needs_deepspeed):
                wrong.append(f"{name} is not installed (needs {spec})")
            continue
        if Version(installed) not in SpecifierSet(spec) and Version(Version(installed).base_version) not in \
                SpecifierSet(spec):
            wrong.append(f"{name} {installed} is outside {spec}")
        else:
            have.append(f"{name} {installed}")
    from empo import versions as tested

    if wrong:
        return Check("versions", False, "; ".join(wrong) + " (the supported sets are empo's requirements: "
                                                           "pip install \"empo[vllm,deepspeed]\")")
    broken = tested.broken()
    if broken:
        return Check("versions", False, "; ".join(broken))
    untested = tested.untested()
    return Check("versions", True, ", ".join(have) + ("; untested: " + "; ".join(untested) if untested else ""))


def cuda(gpus_per_node: int) -> Check:
    import torch

    if not torch.cuda.is_available():
        reason = "no NVIDIA driver" if not Path("/proc/driver/nvidia/version").exists() else "torch sees no GPU"
        return Check("cuda", False, f"CUDA is not usable here ({reason}; torch {torch.__version__}); the plan needs "
                                    f"{gpus_per_node} GPU(s) per node")
    count = torch.cuda.device_count()
    if count < gpus_per_node:
        return Check("cuda", False, f"{count} GPU(s) visible, the plan needs {gpus_per_node} per node "
                                    "(CUDA_VISIBLE_DEVICES?)")
    return Check("cuda", True, f"{count} x {torch.cuda.get_device_name(0)}")


def driver() -> Check:
    import torch

    built = torch.version.cuda
    if built is None:
        return Check("driver", False, f"torch {torch.__version__} is a CPU build: install the CUDA build of the same "
                                      "version")
    try:
        raw = torch._C._cuda_getDriverVersion()  # e.g. 12080 for CUDA 12.8
    except (AttributeError, RuntimeError):
        raw = 0
    if not raw:
        return Check("driver", False, f"no NVIDIA driver answers; the torch wheels need one for CUDA {built}")
    supports = (raw // 1000, (raw % 1000) // 10)
    need = tuple(int(x) for x in built.split(".")[:2])
    if supports[0] < need[0]:
        return Check("driver", False, f"the driver supports CUDA {supports[0]}.{supports[1]}, the torch wheels are "
                                      f"built for CUDA {built}: update the driver, or install torch built for CUDA "
                                      f"{supports[0]}")
    return Check("driver", True, f"driver supports CUDA {supports[0]}.{supports[1]}, torch built for CUDA {built}")


def gpu_memory(need_gib: float) -> Check:
    import torch

    if not torch.cuda.is_available():
        return Check("gpu_memory", False, f"cannot measure: CUDA is not usable (the plan needs {need_gib:.1f} GiB per "
                                          "GPU)")
    free = [torch.cuda.mem_get_info(i)[0] / 2**30 for i in range(torch.cuda.device_count())]
    short = [f"GPU {i}: {f:.1f}" for i, f in enumerate(free) if f < need_gib]
    if short:
        return Check("gpu_memory", False, f"free GiB below the plan's {need_gib:.1f} per GPU: {', '.join(short)} "
                                          "(another job on the GPUs?)")
    return Check("gpu_memory", True, f"{min(free):.1f} GiB free on each GPU, the plan needs {need_gib:.1f}")


def compiler() -> Check:
    found = next((c for c in (os.environ.get("CC"), "cc", "gcc", "clang") if c and shutil.which(c)), None)
    if found is None:
        return Check("compiler", False, "no C compiler on PATH (cc, gcc, clang; or CC): Triton and vLLM compile "
                                        "kernels at the first step; install gcc or load your cluster's module")
    return Check("compiler", True, shutil.which(found))


def dataset(empo_args) -> Check:
    from empo.data import repo_data_file

    name = empo_args.dataset_name
    if name == "arith" or name.startswith("arith:"):
        return Check("dataset", True, "the built-in arithmetic generator")
    path = repo_data_file(name) or Path(name).expanduser()
    if path.suffix in (".jsonl", ".json", ".parquet") or path.exists():
        if not path.is_file():
            return Check("dataset", False, f"dataset file '{name}' does not exist here")
        try:
            with path.open("rb") as f:
                f.read(1)
        except OSError as e:
            return Check("dataset", False, f"dataset file '{path}' cannot be read ({e})")
        return Check("dataset", True, str(path))
    offline = any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE",
                                                                                   "HF_DATASETS_OFFLINE"))
    if offline:
        from huggingface_hub import scan_cache_dir

        try:
            cached = {r.repo_id for r in scan_cache_dir().repos if r.repo_type == "dataset"}
        except Exception:  # noqa: BLE001 - no cache at all
            cached = set()
        if name not in cached:
            return Check("dataset", False, f"hub dataset '{name}' is not in the hub cache and the hub is offline: "
                                           "download it first, or point dataset_name at a local file")
        return Check("dataset", True, f"hub dataset '{name}' (cached)")
    return Check("dataset", True, f"hub dataset '{name}' (downloaded at the start unless cached)")


def output_dir(path: str) -> Check:
    """Writable (the nearest existing folder on its path) and not locked by a live run; creates nothing."""
    import fcntl

    from empo.io import DirectoryLock

    out = Path(path)
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not os.access(existing, os.W_OK):
        return Check("output_dir", False, f"{out} cannot be written ({existing} is not writable)")
    lock = out / DirectoryLock.FILENAME
    if lock.exists():
        fd = os.open(lock, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return Check("output_dir", False, f"{out} is in use by another run (pid {lock.read_text().strip()})")
        finally:
            os.close(fd)
    return Check("output_dir", True, f"{out.resolve()} writable, not in use")


def run_checks(recipe, plan=None, skip: set[str] = frozenset()) -> list[Check]:
    """Every check, in order (``plan``: the launch plan, for the GPU count and memory; None under ``empo train``)."""
    training, empo_args = recipe.training, recipe.empo
    sharding = plan.sharding.kind if plan is not None else ""
    checks = [integrations(training.report_to),
              versions(needs_vllm=training.use_vllm, needs_deepspeed=sharding.startswith("zero")),
              cuda(plan.layout.trainers_per_node if plan is not None and plan.layout.vllm_mode != "server"
                   else plan.cluster.gpus_per_node if plan is not None else 1),
              driver(),
              gpu_memory(max(plan.memory_per_gpu, plan.vllm_memory.get("total (utilization x GPU)", 0.0))
                         if plan is not None else 0.0),
              compiler(), dataset(empo_args), output_dir(training.output_dir)]
    return [Check(c.check, True, f"skipped (--skip-preflight): {c.message}") if c.check in skip and not c.ok else c
            for c in checks]


def as_json(checks: list[Check]) -> list[dict]:
    return [asdict(c) for c in checks]
