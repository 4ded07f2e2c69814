"""The ranges of biounet's numeric options: one place, used where options are parsed.

The command line checks every number against these ranges when it parses
it (:mod:`biounet.cli.parse`), and the library's configs check the same
ranges for values that come from YAML files or Python. A value outside
its range would fail later with a traceback, exhaust the host (``--workers
100000``) or make a command run for ever (``--elastic-grid 100000``).
Importable without torch.
"""

from __future__ import annotations

import math
import os

#: Seeds: numpy's and torch's generators take 0 <= seed < 2**63.
MAX_SEED = 2**63 - 1
#: Tiles per step or per forward pass.
MAX_BATCH = 1024
#: Worker processes a training config may ask for (the command line also
#: caps them at the CPU cores).
MAX_WORKERS = 256
#: Network input tile, px (training, augmentation, summary).
MAX_INPUT_SIZE = 16384
#: Channels of the first level.
MAX_FEATURES = 4096
#: Steps of one run.
MAX_ITERATIONS = 10**9
#: Control points per side of the elastic deformation grid.
MAX_ELASTIC_GRID = 64
#: Standard deviation of the elastic displacements, px.
MAX_ELASTIC_SIGMA = 1000.0
#: Tiles in the figure of ``biounet augment``.
MAX_AUGMENT_TILES = 32
#: Border width sigma and the border weight w0 of Eq. 2 (px, weight).
MAX_SIGMA = 1000.0
MAX_W0 = 1e6


def cpu_count() -> int:
    """CPU cores this process may use (its affinity where known), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def threads_per_worker(workers: int) -> int:
    """Torch threads for each of `workers` processes sharing the cores, at least 1."""
    return max(1, cpu_count() // workers)


def max_workers() -> int:
    """The most worker processes (DataLoader, local Dask) a command may start: the cores."""
    return cpu_count()


def host_memory_mib() -> int:
    """The host's physical memory in MiB (a large value where it cannot be read)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20)
    except (AttributeError, ValueError, OSError):
        return 2**24


def check_number(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    integer: bool = False,
    above: bool = False,
) -> None:
    """Raise ValueError unless `value` is a finite number in its range.

    Parameters
    ----------
    name : str
        Names the value in the message (``"seed"``, ``"weights: sigma"``).
    value : object
    low, high : float, optional
        The range, inclusive (`low` exclusive with `above`).
    integer : bool
        Whether an integer is required.
    above : bool
        `value` must be greater than `low`, not equal to it.

    Examples
    --------
    >>> check_number("seed", 3, low=0, integer=True)
    >>> check_number("seed", -1, low=0, integer=True)
    Traceback (most recent call last):
    ...
    ValueError: seed must be at least 0, got -1
    >>> check_number("sigma", float("inf"), low=0, above=True)
    Traceback (most recent call last):
    ...
    ValueError: sigma must be a finite number, got inf
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    if integer and not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if low is not None and (value <= low if above else value < low):
        least = "greater than" if above else "at least"
        raise ValueError(f"{name} must be {least} {number_text(low)}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be at most {number_text(high)}, got {value!r}")


def number_text(value: float) -> str:
    """A bound as text: integers in full, other numbers short.

    Examples
    --------
    >>> number_text(2**63 - 1), number_text(0.5), number_text(1000.0)
    ('9223372036854775807', '0.5', '1000')
    """
    if isinstance(value, int) or float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}"
