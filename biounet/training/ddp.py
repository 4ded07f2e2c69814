"""Data-parallel training with torch DistributedDataParallel, started by ``torchrun``.

``torchrun --nproc-per-node N -m biounet train ...`` starts N processes; each
calls :func:`setup` (NCCL on GPUs, one GPU per process; gloo on CPUs), wraps
the model with :func:`wrap`, and draws the global samples ``(step * N + rank)
* b ... + b - 1`` of the run (:class:`biounet.training.loop.StepIndices`): its own seed
stream and its own share of the sample sequence. Gradients are averaged over
the ranks, so N ranks with batch b take the same steps as one process with
batch N * b on the same samples. Only rank 0 validates and writes
checkpoints, logs and plots. No process group is created for a single
process.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from biounet.device import Runtime


def world_size() -> int:
    """Number of training processes (1 without torchrun)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    """Rank of this process (0 without torchrun)."""
    return dist.get_rank() if dist.is_initialized() else 0


def launched() -> bool:
    """True when started by torchrun (or another launcher setting WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(runtime: Runtime) -> Runtime:
    """Join the process group; on CUDA give each process its own GPU (LOCAL_RANK).

    Returns the runtime this process should use.
    """
    if not launched() or dist.is_initialized():
        return runtime
    if runtime.is_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        runtime = Runtime(torch.device("cuda", local), runtime.amp_dtype, runtime.channels_last)
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return runtime


def wrap(model: torch.nn.Module, runtime: Runtime) -> torch.nn.Module:
    """Wrap a model (already on its device) for gradient averaging across ranks."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [runtime.device.index] if runtime.is_cuda else None
    return DistributedDataParallel(model, device_ids=ids)


def teardown() -> None:
    """Leave the process group, if any."""
    if dist.is_initialized():
        dist.destroy_process_group()
