"""EMPO training entry point (open-r1 style).

    empo train --config recipes/SmolLM2-135M-Instruct/empo/config_arith_cpu.yaml
    accelerate launch --config_file recipes/accelerate_configs/ddp.yaml -m empo.train --config <recipe>
    torchrun --nproc_per_node 2 -m empo.train --config <recipe>

A run started again with the same command resumes from the last checkpoint in ``output_dir``; started with other
defining settings it is refused before the model loads (``empo.training.run_dir``; ``--restart true`` starts afresh).
One process writes an ``output_dir`` at a time (``empo.io.DirectoryLock``).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from empo.recipe import load_recipe, split_config
    from empo.training.run import train

    return train(load_recipe(*split_config(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":  # torchrun/accelerate: the same one-line errors as `empo train`
    from empo.distributed import exit_worker
    from empo.errors import report_errors

    exit_worker(report_errors("train", lambda: main(sys.argv[1:])))  # its own status, not an abort at teardown
