"""The ``report_to`` integrations of a recipe: installed, and (wandb) with a key, before anything starts.

transformers raises at ``Trainer.__init__`` when a report_to integration is missing (``WandbCallback requires
wandb``), after the model has loaded; wandb without a key asks for one, which a batch job cannot answer. The paper
recipes report to wandb, which comes with the ``wandb`` extra (``pip install "empo[wandb]"``).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

#: report_to name -> the module it needs
INTEGRATION_MODULES = {"wandb": "wandb", "trackio": "trackio", "tensorboard": "tensorboard", "mlflow": "mlflow",
                       "comet_ml": "comet_ml", "clearml": "clearml", "neptune": "neptune", "swanlab": "swanlab",
                       "dvclive": "dvclive", "azure_ml": "azureml", "codecarbon": "codecarbon"}


def reporting_problem(report_to) -> str | None:
    """Why the recipe's report_to cannot work on this machine (one line), or None."""
    names = [r for r in (report_to or []) if r not in ("none", "all")]
    missing = [r for r in names if INTEGRATION_MODULES.get(r) and importlib.util.find_spec(INTEGRATION_MODULES[r])
               is None]
    if missing:
        extra = ' (pip install "empo[wandb]")' if "wandb" in missing else ""
        return (f"report_to names {', '.join(missing)}, which is not installed{extra}; install it, or pass "
                "--report_to none (metrics.jsonl is written anyway)")
    if "wandb" in names and not _wandb_key():
        return "report_to wandb, but wandb has no API key here: run `wandb login` (or set WANDB_API_KEY, or " \
               "WANDB_MODE=offline)"
    return None


def _wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="replace")
