"""Test-only shim: let accelerate's own FSDP code path run on CPU processes (gloo), for tests/helpers/sharded_check.py.

Why it is needed (accelerate 1.15): ``PartialState._prepare_backend`` makes every CPU launch ``MULTI_CPU`` (gloo),
and ``AcceleratorState.__init__`` turns a requested FSDP plugin (``ACCELERATE_USE_FSDP=true`` from ``accelerate
launch`` with an FSDP config, or ``Accelerator(fsdp_plugin=...)``) into ``DistributedType.FSDP`` only inside
``elif self.distributed_type in [MULTI_GPU, MULTI_MLU, MULTI_SDAA, MULTI_MUSA, MULTI_NPU, MULTI_XPU, MULTI_HPU,
MULTI_NEURON]``. On CPU the plugin is silently dropped and the run is plain data parallel. Nothing after that
branch needs a GPU for FSDP2: torch's ``fully_shard`` builds a CPU device mesh over gloo, and accelerate's
``fsdp2_prepare_model`` / ``fsdp2_load_full_state_dict`` use the mesh's device type.

What it does: after the original ``AcceleratorState.__init__``, if the state is ``MULTI_CPU`` and an FSDP plugin
was passed, it runs the body of that branch (the same four statements) -- as if ``MULTI_CPU`` were in the list.
On a GPU the branch already fired, so this is a no-op there. It is installed only by the test harness, never by
empo's own code.
"""

from __future__ import annotations

import functools


def let_accelerate_run_fsdp_on_cpu() -> None:
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    if getattr(AcceleratorState.__init__, "_empo_fsdp_on_cpu", False):
        return
    original_init = AcceleratorState.__init__

    @functools.wraps(original_init)
    def __init__(self, mixed_precision=None, cpu=False, dynamo_plugin=None, deepspeed_plugin=None,
                 fsdp_plugin=None, *args, **kwargs):
        original_init(self, mixed_precision, cpu, dynamo_plugin, deepspeed_plugin, fsdp_plugin, *args, **kwargs)
        if self.distributed_type == DistributedType.MULTI_CPU and fsdp_plugin is not None:
            # accelerate/state.py, AcceleratorState.__init__, the FSDP branch of the GPU-like device types
            self.distributed_type = DistributedType.FSDP
            if self._mixed_precision != "no":
                fsdp_plugin.set_mixed_precision(self._mixed_precision)
            self.fsdp_plugin = fsdp_plugin
            PartialState._shared_state["distributed_type"] = self.distributed_type

    __init__._empo_fsdp_on_cpu = True
    AcceleratorState.__init__ = __init__
