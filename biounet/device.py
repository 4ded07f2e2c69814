"""Device and precision: the one place that decides where and how tensors run.

``--device auto|cpu|cuda|cuda:N`` and ``--precision auto|fp32|bf16|fp16`` map
to a :class:`Runtime`. Mixed precision (AMP) is the default on CUDA; on the CPU
everything runs in float32 unless bf16 is asked for (on CPUs with native
bfloat16 arithmetic). ``channels_last`` memory format is used where it
helps (CUDA tensor cores, oneDNN convolutions on the CPU).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass

import torch

from biounet.errors import ParameterError
from biounet.options import Precision

log = logging.getLogger(__name__)

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Runtime:
    """Where and in which precision the network runs.

    Attributes
    ----------
    device : torch.device
    amp_dtype : torch.dtype or None
        Autocast dtype on CUDA (bf16 or fp16); None means float32.
    channels_last : bool
        Whether models and inputs use the channels-last memory format.
    """

    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = True

    @property
    def is_cuda(self) -> bool:
        """True on a CUDA device."""
        return self.device.type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager:
        """Context manager enabling AMP on CUDA; a no-op in float32."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        """Move `module` to the device (and memory format); return it."""
        module = module.to(self.device)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        return module

    def tensor(
        self, array, *, dtype: torch.dtype = torch.float32, non_blocking: bool = True
    ) -> torch.Tensor:
        """Move an (N, C, H, W) array or tensor to the device, as `dtype` (float32)."""
        t = torch.as_tensor(array)
        if self.is_cuda and not t.is_cuda:
            t = t.pin_memory()
        t = t.to(self.device, dtype=dtype, non_blocking=non_blocking)
        if self.channels_last and t.ndim == 4:
            t = t.contiguous(memory_format=torch.channels_last)
        return t

    def describe(self) -> str:
        """Short text such as ``cuda:0 (NVIDIA H100, bf16)`` or ``cpu (float32, 2 threads)``."""
        prec = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.amp_dtype, "float32")
        if self.is_cuda:
            name = torch.cuda.get_device_name(self.device)
            return f"{self.device} ({name}, {prec})"
        return f"cpu ({prec}, {torch.get_num_threads()} threads)"


def resolve_device(spec: str = "auto") -> torch.device:
    """Turn ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` into a device.

    ``auto`` picks the first CUDA device when there is one and the CPU
    otherwise (logging that it fell back). Asking for CUDA where there is none,
    or for a device number that does not exist, is an error.

    Raises
    ------
    BiounetError
        For an unknown spec or an unavailable CUDA device.
    """
    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        log.info("CUDA is not available: running on the CPU")
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        index_text = spec.partition(":")[2] or "0"
        if not index_text.isdigit():
            raise ParameterError("device", spec, "expected cuda:N with N a number")
        if not torch.cuda.is_available():
            raise ParameterError("device", spec, "CUDA is not available on this machine")
        index = int(index_text)
        if index >= torch.cuda.device_count():
            raise ParameterError(
                "device", spec, f"only {torch.cuda.device_count()} CUDA device(s) present"
            )
        return torch.device("cuda", index)
    raise ParameterError("device", spec, "expected auto, cpu, cuda or cuda:N")


@functools.cache
def reuse_freed_memory() -> bool:
    """Let glibc keep freed feature maps for the next forward pass (this process).

    glibc serves every buffer above its mmap threshold (at most 32 MiB) with a
    fresh ``mmap`` and unmaps it on ``free``, so each such feature map's pages
    are faulted in and zeroed anew on every forward pass. A level-0 feature
    map of a 16-feature network is 31 MiB at a 700 px window and 93 MiB at
    1208 px, so this is what made windows above 700 px slow on the CPU.
    Dask's nanny makes it worse: it starts workers with
    ``MALLOC_TRIM_THRESHOLD_=65536``, which sends every buffer above 128 KiB
    that way (a 700 px tile, features=16, 2 threads: 0.35 s in a Dask worker,
    0.155 s in a plain process, 0.135 s after the thresholds were fixed).

    This call serves large buffers from the heap instead (``M_MMAP_MAX`` 0)
    and keeps up to 1 GiB of freed memory at the heap's top for reuse
    (``M_TRIM_THRESHOLD``); :func:`return_freed_memory` gives it back when
    a job ends. Measured with ``benchmarks/bench_windows.py`` (docs/performance.md).
    :func:`make_runtime` calls it; it acts once per process. It also caps glibc
    at one arena (``M_ARENA_MAX`` 1): threads started later (Dask's workers,
    :func:`biounet.inference.ahead.ahead`) would otherwise allocate from
    arenas of their own, whose heaps of 64 MiB cannot hold such buffers, so
    glibc maps them one by one there whatever ``M_MMAP_MAX`` says (a 1212 px
    window in a thread: 170,000 page faults per pass, 3 with one arena).
    glibc fixes its arena limit when a second thread first allocates, so the
    cap holds only if this runs before any work starts torch's threads, as
    :func:`make_runtime` does; processes started with ``MALLOC_ARENA_MAX=1``
    (Dask's local workers) need no call. Reuse starts after a few buffers: each
    thread's cache of small chunks (tcache) first keeps the bytes that memalign
    trims off each buffer, so the heap grows by one buffer for the first 7-10
    that a thread frees (measured in tests/test_device.py), then stays flat.

    Returns
    -------
    bool
        False where the C library has no ``mallopt`` (not glibc); nothing changed.
    """
    libc = _libc()
    if libc is None:
        return False
    m_trim_threshold, m_mmap_max, m_arena_max = -1, -4, -8  # from glibc's malloc.h
    return (
        bool(libc.mallopt(m_mmap_max, 0))
        and bool(libc.mallopt(m_trim_threshold, 1 << 30))
        and bool(libc.mallopt(m_arena_max, 1))
    )


def return_freed_memory() -> bool:
    """Hand the heap's free pages back to the system (``malloc_trim``); False without glibc.

    Called when a prediction job ends, so that a long-lived process (napari, a
    notebook) does not keep the feature maps' memory that
    :func:`reuse_freed_memory` lets it reuse during the job.
    """
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim(0)
    return True


@functools.cache
def _libc():
    """The C library if it is glibc (has ``mallopt``), else None."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018 (glibc only)
    except (OSError, AttributeError):
        return None
    return libc


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo (and lscpu) give it, to name beside timings.

    Falls back on the platform's processor string, then its machine type.
    """
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def cpu_has_bf16() -> bool:
    """Whether the CPU computes in bfloat16 natively (x86 AVX512-BF16 or AMX-BF16; Linux).

    oneDNN then runs bf16 convolutions about twice as fast as float32 ones;
    without these instructions it emulates them, slower than float32.
    """
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def make_runtime(
    device: str = "auto",
    precision: Precision = "auto",
    *,
    channels_last: bool = True,
    training: bool = False,
) -> Runtime:
    """Resolve a device and a precision into a :class:`Runtime`.

    ``precision="auto"`` means bf16 on CUDA devices that support it, fp16 on
    older ones, float32 on the CPU. On the CPU, bf16 (autocast through oneDNN)
    is opt-in for prediction and needs native bfloat16 arithmetic
    (:func:`cpu_has_bf16`): it about halves the time of a forward pass on such
    CPUs, with probabilities that differ from float32 by about 1e-2. With
    ``training=True``, ``"auto"`` is bf16 on such a CPU as well: a training step
    takes 0.36-0.44 of its float32 time on AMX cores and trains as well
    (docs/performance.md); elsewhere it stays float32. fp16 on the CPU is an error.

    Examples
    --------
    >>> make_runtime("cpu")
    Runtime(device=device(type='cpu'), amp_dtype=None, channels_last=True)
    """
    dev = resolve_device(device)
    reuse_freed_memory()
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ParameterError("precision", precision, "expected auto, fp32, bf16 or fp16")
    if dev.type != "cuda":
        if precision == "auto" and training and cpu_has_bf16():
            precision = "bf16"
        if precision == "fp16":
            raise ParameterError(
                "precision", precision, "fp16 needs a CUDA device (on the CPU: bf16 or fp32)"
            )
        if precision == "bf16" and not cpu_has_bf16():
            raise ParameterError(
                "precision",
                precision,
                "this CPU has no native bfloat16 arithmetic (AVX512-BF16 or AMX), so bf16 "
                "would be slower than fp32; use fp32",
            )
        return Runtime(dev, torch.bfloat16 if precision == "bf16" else None, channels_last)
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    amp = None if precision == "fp32" else _DTYPES[precision]
    return Runtime(dev, amp, channels_last)
