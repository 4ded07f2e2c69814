import os
import subprocess
import sys

import pytest
import torch

from biounet import BiounetError
from biounet.cli.parse import option_message
from biounet.device import make_runtime, resolve_device
from biounet.errors import ParameterError


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    rt = make_runtime("cpu")
    assert rt.amp_dtype is None and not rt.is_cuda
    with rt.autocast():
        assert torch.ones(2).dtype == torch.float32
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA errors")
@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_cuda_missing_is_clear(spec):
    with pytest.raises(BiounetError, match="CUDA is not available"):
        resolve_device(spec)


def test_bad_specs():
    """The library names its parameter; the command line names the option (tests/cli)."""
    for spec in ("gpu", "cuda:x"):
        with pytest.raises(ParameterError, match=f"^device='{spec}': expected") as info:
            resolve_device(spec)
        assert option_message(info.value).startswith(f"--device {spec}: expected")
    with pytest.raises(BiounetError, match="needs a CUDA device"):
        make_runtime("cpu", "fp16")


def test_bf16_on_the_cpu_only_with_native_bfloat16(monkeypatch, rng):
    import numpy as np

    from biounet import device
    from biounet.inference.segmentation import predict
    from biounet.network.unet import UNet, UNetConfig

    monkeypatch.setattr(device, "cpu_has_bf16", lambda: False)
    with pytest.raises(BiounetError, match="no native bfloat16 arithmetic"):
        make_runtime("cpu", "bf16")
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: True)  # emulated where absent: slow
    rt = make_runtime("cpu", "bf16")
    assert rt.amp_dtype == torch.bfloat16 and "bf16" in rt.describe()
    with rt.autocast():
        assert rt.prepare(torch.nn.Conv2d(1, 2, 3))(rt.tensor(torch.rand(1, 1, 8, 8))).dtype == (
            torch.bfloat16
        )
    torch.manual_seed(0)
    net = UNet(UNetConfig(features=4, depth=2)).eval()
    image = rng.integers(0, 256, (60, 70)).astype(np.uint8)
    low = predict(image, net, runtime=rt)
    full = predict(image, net, runtime=make_runtime("cpu"))
    assert low.dtype == np.float32 and low.shape == full.shape
    assert 0 < np.abs(low - full).max() < 0.05  # rounded, not a different function


def test_prepare_and_tensor_channels_last():
    rt = make_runtime("cpu")
    conv = rt.prepare(torch.nn.Conv2d(2, 3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    t = rt.tensor(torch.zeros(1, 2, 5, 5, dtype=torch.float64))
    assert t.dtype == torch.float32 and t.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_runtime():
    rt = make_runtime("cuda")
    assert rt.is_cuda and rt.amp_dtype in (torch.bfloat16, torch.float16)
    net = rt.prepare(torch.nn.Conv2d(1, 2, 3))
    with rt.autocast():
        y = net(rt.tensor(torch.rand(1, 1, 8, 8)))
    assert y.dtype == rt.amp_dtype


_FAULTS = """
import resource, sys, threading
import torch
from biounet.device import return_freed_memory, reuse_freed_memory

mib, where = int(sys.argv[1]), sys.argv[2]  # argv[3]: plain or fixed

# page faults of 20 allocations after 20 that warm up, in one thread: glibc's
# per-thread cache of small chunks (tcache) keeps the few bytes memalign trims off
# each large buffer, so the first 7-10 freed buffers are not reused (the heap grows
# by one buffer each time); a fresh thread would start that again with a cache of
# its own, so one long-lived thread does both, as the look-ahead's does
def faults(where="main"):
    if where == "thread":  # a thread started after the fix, as the look-ahead's is
        out = []
        t = threading.Thread(target=lambda: out.append((main_faults(), main_faults())[1]))
        t.start()
        t.join()
        return out[0]
    main_faults()
    return main_faults()

def main_faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        torch.ones(mib << 20, dtype=torch.uint8)  # allocated, touched and freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

def rss_mib():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20

if sys.argv[3] == "plain":
    print(faults())
else:  # as make_runtime does: before any work, so before torch's threads allocate
    assert reuse_freed_memory()
    fixed = faults(where)
    kept = rss_mib()
    assert return_freed_memory()
    print(fixed, kept, rss_mib())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
@pytest.mark.parametrize(
    ("mib", "env", "where"),
    [
        # Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536, which makes glibc map and
        # unmap every large buffer: each 4 MiB array faults its pages in anew
        (4, {"MALLOC_TRIM_THRESHOLD_": "65536"}, "main"),
        # above glibc's largest mmap threshold (32 MiB) every process does that: a
        # level-0 feature map of a 1208 px window (features=16) is 93 MiB
        (96, {}, "main"),
        # a thread of its own would allocate from an arena of its own, where glibc maps
        # them whatever M_MMAP_MAX says, unless threads share the main arena (M_ARENA_MAX)
        (96, {}, "thread"),
    ],
)
def test_large_buffers_are_reused_and_given_back_at_the_end(mib, env, where):
    # a clean environment: glibc reads MALLOC_* at start-up, and Dask's nanny leaves
    # its settings (and thread counts) in the environment of the process that starts
    # a cluster (an earlier test); with them, this script's heap sits near the trim
    # threshold and is trimmed and faulted in again now and then
    clean = {k: os.environ[k] for k in ("PATH", "HOME", "PYTHONPATH") if k in os.environ}

    def run(phase: str) -> list[float]:
        out = subprocess.run(
            [sys.executable, "-c", _FAULTS, str(mib), where, phase],
            env={**clean, "OMP_NUM_THREADS": "2", **env},
            capture_output=True,
            text=True,
            check=True,
        )
        return list(map(float, out.stdout.split()))

    # M_ARENA_MAX binds threads only if no other thread has allocated yet (glibc fixes
    # its arena limit at a thread's first allocation), so the fix comes first, as in
    # make_runtime, and the plain case runs in a process of its own
    (plain,) = run("plain")
    fixed, kept, trimmed = run("fixed")
    pages = 20 * (mib << 20) / 4096
    assert plain >= pages / 4  # the slow behaviour is there without the fix
    assert fixed < plain / 20
    if mib > 32:  # the reused buffer stays in the heap until the job hands it back
        assert kept - trimmed >= mib / 2
