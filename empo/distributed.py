"""The few collective operations EMPO needs, no-ops in a single process."""

from __future__ import annotations


def world() -> tuple[int, int]:
    """(rank, world_size) of torch.distributed, or (0, 1) when it is not initialised."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_list(local: list) -> tuple[list, int]:
    """Concatenate every process's list in rank order; return it and this process's offset into it.

    Each process holds a contiguous slice of the generation batch (TRL's layout), so the concatenation is the
    global batch and a question's G completions can be regrouped even when they sit on different processes.
    """
    import torch.distributed as dist

    rank, size = world()
    if size == 1:
        return list(local), 0
    parts: list = [None] * size
    dist.all_gather_object(parts, list(local))
    offset = sum(len(p) for p in parts[:rank])
    return [x for p in parts for x in p], offset


def end_process_group() -> None:
    """Destroy the default process group, if this process has one, before the interpreter exits. Without it a
    process that finished its work can still abort at exit (SIGABRT, "terminate called without an active
    exception"): Gloo's worker threads may hold finished work whose tensors are freed during interpreter
    finalisation (pytorch/pytorch#179291 has the analysis; torch leaves the call to the program). Seen on a 2-process
    ZeRO-2 run on CPU that had written its results."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
