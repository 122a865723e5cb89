"""The few collective operations EMPO needs, no-ops in a single process."""

from __future__ import annotations

from typing import NoReturn


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


def exit_worker(code: int) -> NoReturn:
    """End a process with ``code`` once its work is done. Under a multi-process launcher (``WORLD_SIZE`` > 1; the reward
    kit's split workers set it too) it does what a normal exit does -- waits for non-daemon threads, destroys the
    process group, runs Python's exit handlers, flushes the streams -- then leaves with ``os._exit``, skipping the C++
    destructors of interpreter teardown. There, a worker that had finished and written everything sometimes aborted
    (SIGABRT, "terminate called without an active exception", after the last Python frame had returned; seen on
    2-process ZeRO-2 and FSDP2 runs on CPU, about 1 launch in 10 for a resumed FSDP2 run, still after destroying the
    group, and in the reward kit's 2-process split), which the launcher reports as the whole job failing.
    multiprocessing ends its children the same way. A single process exits normally."""
    import atexit
    import os
    import sys
    import threading

    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        sys.exit(code)
    for thread in threading.enumerate():  # what a normal exit waits for first: non-daemon threads
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    if dist.is_available() and dist.is_initialized():  # collectives are over (pytorch/pytorch#179291)
        dist.destroy_process_group()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
