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
from biounet.errors import BiounetError


def world_size() -> int:
    """Number of training processes (1 without torchrun)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    """Rank of this process (0 without torchrun)."""
    return dist.get_rank() if dist.is_initialized() else 0


#: What a launcher (torchrun) sets for every process, besides WORLD_SIZE.
LAUNCH_VARIABLES = ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched() -> bool:
    """True when started by torchrun (or another launcher setting WORLD_SIZE > 1)."""
    text = os.environ.get("WORLD_SIZE", "1").strip()
    return text.isdigit() and int(text) > 1


def check_launch(environ: dict[str, str] | None = None) -> None:
    """Refuse distributed environment variables that no launcher set consistently.

    ``torchrun`` sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``
    and ``MASTER_PORT`` for every process. One of them left in the
    environment by hand (or by a job script) would otherwise make a single
    process wait for peers that never come, or fail with a traceback.

    Raises
    ------
    BiounetError
        Naming the variable and what to do.
    """
    env = os.environ if environ is None else environ
    given = [name for name in ("WORLD_SIZE", *LAUNCH_VARIABLES) if name in env]
    if not given:
        return
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT"):
        if name in env and not env[name].strip().isdigit():
            raise BiounetError(
                f"{name}={env[name]!r}: not a non-negative integer; start several processes "
                "with torchrun, or unset it"
            )
    world = int(env.get("WORLD_SIZE", "1"))
    if world < 1:
        raise BiounetError("WORLD_SIZE=0: must be at least 1; start with torchrun, or unset it")
    if world == 1:
        return  # one process: no process group is made, the rest is ignored
    missing = [name for name in LAUNCH_VARIABLES if name not in env or not env[name].strip()]
    if missing:
        raise BiounetError(
            f"WORLD_SIZE={world} is set but {', '.join(missing)} not: start the processes "
            "with torchrun (docs/distributed.md), or unset WORLD_SIZE"
        )
    rank = int(env["RANK"])
    if rank >= world:
        raise BiounetError(f"RANK={rank}: must be below WORLD_SIZE={world}")


def setup(runtime: Runtime) -> Runtime:
    """Join the process group; on CUDA give each process its own GPU (LOCAL_RANK).

    Returns the runtime this process should use.
    """
    check_launch()
    if not launched() or dist.is_initialized():
        return runtime
    try:
        if runtime.is_cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            runtime = Runtime(torch.device("cuda", local), runtime.amp_dtype, runtime.channels_last)
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
    except (RuntimeError, ValueError) as exc:  # e.g. LOCAL_RANK past the GPUs, no rendezvous
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise BiounetError(
            f"cannot join the process group of WORLD_SIZE={os.environ.get('WORLD_SIZE')} "
            f"({reason}); start the processes with torchrun"
        ) from None
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
