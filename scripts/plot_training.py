"""Plot the training curves of a run's metrics.jsonl (reward, semantic entropy, kept fraction, majority ratio,
accuracies, completion length) into one PNG.

    python scripts/plot_training.py runs/SmolLM2-135M-Instruct/empo-arith-cpu --out docs/cpu_default_run.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PANELS = [
    ("reward", "reward (mean)"),
    ("empo/entropy_mean", "semantic entropy (nats)"),
    ("empo/kept_fraction", "kept-group fraction"),
    ("empo/majority_ratio_mean", "majority ratio"),
    (("empo/sample_accuracy", "empo/majority_accuracy"), "accuracy vs gold (logged only)"),
    ("completions/mean_length", "completion length (tokens)"),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("--out", default=None, help="PNG path (default: <run_dir>/training_curves.png)")
    a = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(l) for l in (Path(a.run_dir) / "metrics.jsonl").read_text().splitlines() if l.strip()]
    rows = [r for r in rows if "reward" in r]  # drop the final train-summary row
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    for ax, (keys, title) in zip(axes.flat, PANELS):
        for key in (keys if isinstance(keys, tuple) else (keys,)):
            pts = [(r["step"], float(r[key])) for r in rows if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), marker=".", label=key.split("/")[-1])
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if isinstance(keys, tuple):
            ax.legend()
    fig.suptitle(Path(a.run_dir).name)
    fig.tight_layout()
    out = Path(a.out or Path(a.run_dir) / "training_curves.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    print(out)


if __name__ == "__main__":
    main()
