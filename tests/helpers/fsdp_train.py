"""`python -m empo.train` for a CPU FSDP launch: installs fsdp_on_cpu's test-only shim first (without it accelerate
silently runs plain data parallel on CPU), then runs empo's own training entry point unchanged. After training, rank
0 writes how accelerate ran it to $EMPO_FSDP_REPORT: the distributed type, the FSDP version and the trained model's
FSDP2 layout, so a test can tell FSDP from a silent fallback.

    accelerate launch --config_file cpu_fsdp.yaml tests/fsdp_train.py --config RECIPE.yaml
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fsdp_on_cpu import let_accelerate_run_fsdp_on_cpu  # noqa: E402


def main(argv: list[str]) -> int:
    let_accelerate_run_fsdp_on_cpu()
    import torch
    from transformers import Trainer

    import empo.train

    layouts = []
    original_train = Trainer.train

    def train_and_record(self, *args, **kwargs):  # the layout the trainer ended with, from every rank
        result = original_train(self, *args, **kwargs)
        from torch.distributed.fsdp import FSDPModule

        params = list(self.model_wrapped.parameters())
        mine = {"root_is_fsdp_module": isinstance(self.model_wrapped, FSDPModule),
                "dtensor_params": sum(hasattr(p, "to_local") for p in params), "params": len(params),
                "local_numel": sum((p.to_local() if hasattr(p, "to_local") else p).numel() for p in params),
                "full_numel": sum(p.numel() for p in params)}
        every = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(every, mine)
        state = self.accelerator.state
        layouts.append({"distributed_type": str(state.distributed_type), "world_size": self.accelerator.num_processes,
                        "fsdp_version": getattr(getattr(state, "fsdp_plugin", None), "fsdp_version", None),
                        "ranks": every})
        return result

    Trainer.train = train_and_record
    code = empo.train.main(argv)
    if os.environ.get("EMPO_FSDP_REPORT") and int(os.environ.get("RANK", "0")) == 0:
        Path(os.environ["EMPO_FSDP_REPORT"]).write_text(json.dumps(layouts))
    return code


if __name__ == "__main__":
    from empo.distributed import exit_worker

    exit_worker(main(sys.argv[1:]))  # as empo.train ends
