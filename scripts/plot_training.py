"""Plot the training curves of a run's metrics.jsonl (reward, semantic entropy, kept fraction, majority ratio,
accuracies, completion length) into one PNG. `empo train` writes the same plot into the run directory at its end.

    python scripts/plot_training.py runs/SmolLM2-135M-Instruct/empo-arith-mix-band-ds-cpu \
        --out eval/results/cpu_default_run.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from empo.training.report import plot_training_curves


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("--out", default=None, help="PNG path (default: <run_dir>/training_curves.png)")
    a = p.parse_args()
    run = Path(a.run_dir)
    print(plot_training_curves(run / "metrics.jsonl", a.out or run / "training_curves.png", title=run.name))


if __name__ == "__main__":
    main()
