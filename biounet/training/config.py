"""The configuration of a training run: one frozen dataclass, saved as YAML and in checkpoints.

Everything a run depends on is a value here (the paper leaves the learning
rate, the iterations, weight decay and the normalisation open: PAPER.md
item 21), so a run is reproduced from its ``config.yaml`` alone. Nested
sections reuse the library's own configs: ``model`` (:class:`UNetConfig`),
``normalization``, ``weights`` (:class:`WeightMapConfig`) and ``augment``
(:class:`AugmentConfig`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from biounet.errors import BiounetError
from biounet.limits import (
    MAX_BATCH,
    MAX_INPUT_SIZE,
    MAX_ITERATIONS,
    MAX_SEED,
    MAX_WORKERS,
    check_number,
)
from biounet.network.normalize import Normalization
from biounet.network.unet import UNetConfig
from biounet.plain import from_plain
from biounet.training.augment import AugmentConfig
from biounet.training.schedule import check_schedule
from biounet.training.weight_map import WeightMapConfig

AUGMENT_ON = ("auto", "workers", "device")
#: The largest config file read (a config is a few kB; this keeps a device file or a
#: huge file from being read whole).
MAX_CONFIG_BYTES = 2**20


@dataclass(frozen=True)
class DataConfig:
    """Where the training and validation pairs come from.

    Parameters
    ----------
    images, labels : str
        Training images and labels (stack, file or folder; see
        :func:`biounet.training.data.load_pairs`). ``labels`` may be empty for the
        Cell Tracking Challenge layout.
    val_images, val_labels : str, optional
        Held-out validation pairs.
    val_count : int
        Without `val_images`: hold out the last `val_count` training pairs.
    label_kind : {'auto', 'binary', 'instance'}
        ``auto``: per label file, its stated kind, else instances for more than two values.
    foreground : {'high', 'low'}
        Which value of a binary mask marks objects (ISBI: high, 255 = cell).
    """

    images: str = ""
    labels: str | None = None
    val_images: str | None = None
    val_labels: str | None = None
    val_count: int = 0
    label_kind: str = "auto"
    foreground: str = "high"

    def __post_init__(self) -> None:
        check_number("val_count", self.val_count, low=0, integer=True)


@dataclass(frozen=True)
class TrainConfig:
    """A training run (Ronneberger et al. 2015, Sec. 3).

    Parameters
    ----------
    model, normalization, weights, augment, data
        Nested configurations.
    input_size : int
        Network input tile per sample (572 in the paper); must be valid.
    batch_size : int
        Tiles per step ("we favor large input tiles over a large batch size
        and hence reduce the batch to a single image").
    iterations : int
        Optimiser steps.
    lr : float
        SGD learning rate, the peak with a schedule (not given in the paper; 0.001 from
        the recipe study in docs/training.md: no stall in 4 runs, where 0.003 stalled in 2 of 5).
    lr_schedule : {'constant', 'step', 'poly'}
        How the rate changes over the run (:mod:`biounet.training.schedule`).
    warmup : int
        Steps of linear warm-up of the rate (0: none).
    momentum : float
        0.99 in the paper.
    weight_decay : float
    ema : float
        Weight averaging: the decay of an exponential moving average of the
        weights (0: off; 0.999, the default, averages about the last 1000
        steps). Validation and the checkpoints' models use the average
        (:mod:`biounet.training.averaging`).
    val_every, checkpoint_every, log_every : int
        In steps.
    seed : int
        Seeds the sample sequence, the initial weights and dropout.
    workers : int
        DataLoader worker processes preparing tiles while the network runs.
    augment_on : {'auto', 'workers', 'device'}
        Where tiles are resampled. ``workers``: whole tiles in the DataLoader
        workers (the CPU). ``device``: the workers draw the random choices and
        the sampling grid only; images, classes and weight maps stay on the
        training device, which cuts the tiles (no tile crosses the PCIe bus).
        ``auto``: ``device`` on CUDA, ``workers`` on the CPU. Both give the
        same tiles (:mod:`biounet.training.tiles`).
    stall_after : int
        From this step on, every validation checks whether the run is stalled
        on the trivial answer (:mod:`biounet.training.stall`); 0: never.
    stall_restarts : int
        How often a stalled run is restarted from scratch with a new seed and
        a warm-up before it is left to end as it is.
    time_limit : float or str, optional
        Train at most this long per call (seconds, or ``"90m"``, ``"2h"``,
        ``"1h30m"``), then stop cleanly with a checkpoint; ``--resume``
        continues. Stored in seconds.
    """

    model: UNetConfig = field(default_factory=UNetConfig)
    normalization: Normalization = field(default_factory=Normalization)
    weights: WeightMapConfig = field(default_factory=WeightMapConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    input_size: int = 572
    batch_size: int = 1
    iterations: int = 10000
    lr: float = 0.001
    lr_schedule: str = "constant"
    warmup: int = 0
    momentum: float = 0.99
    weight_decay: float = 0.0
    ema: float = 0.999
    val_every: int = 250
    checkpoint_every: int = 250
    log_every: int = 10
    seed: int = 0
    workers: int = 1
    augment_on: str = "auto"
    stall_after: int = 500
    stall_restarts: int = 2
    time_limit: float | str | None = None  # a text such as "2h" becomes seconds

    def __post_init__(self) -> None:
        if self.time_limit is not None:
            object.__setattr__(self, "time_limit", parse_duration(self.time_limit))
        for name in ("batch_size", "iterations", "val_every", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        limits = {
            "input_size": (1, MAX_INPUT_SIZE),
            "batch_size": (1, MAX_BATCH),
            "iterations": (1, MAX_ITERATIONS),
            "warmup": (0, MAX_ITERATIONS),
            "seed": (0, MAX_SEED),
            "workers": (0, MAX_WORKERS),
            "stall_after": (0, MAX_ITERATIONS),
            "stall_restarts": (0, 100),
        }
        for name, (low, high) in limits.items():
            check_number(name, getattr(self, name), low=low, high=high, integer=True)
        for name in ("lr", "momentum", "weight_decay", "ema"):
            check_number(name, getattr(self, name))
        if self.augment_on not in AUGMENT_ON:
            raise ValueError(
                f"augment_on must be one of {', '.join(AUGMENT_ON)}, got {self.augment_on!r}"
            )
        check_schedule(self.lr_schedule)
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")
        if not self.lr > 0 or not 0 <= self.momentum < 1 or self.weight_decay < 0:
            raise ValueError("need lr > 0, 0 <= momentum < 1 and weight_decay >= 0")
        self.model.output_size(self.input_size)  # raises, naming the nearest valid sizes

    @property
    def output_size(self) -> int:
        """Output region of one tile (388 for 572)."""
        return self.model.output_size(self.input_size)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested values (for YAML and checkpoints)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("model", "normalization", "data"):
            out[name] = asdict(out[name])
        out["weights"] = self.weights.to_dict()
        out["augment"] = self.augment.to_dict()
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from nested plain values; unknown keys are errors."""
        values = dict(values)
        nested = {
            "model": UNetConfig,
            "normalization": Normalization,
            "weights": WeightMapConfig,
            "augment": AugmentConfig,
            "data": DataConfig,
        }
        for name, section in nested.items():
            if name in values:
                build = getattr(section, "from_dict", None)
                plain = values[name] or {}
                try:
                    values[name] = build(plain) if build else from_plain(section, plain)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"{name}: {exc}") from None
        return from_plain(cls, values, what="training option")

    def with_overrides(self, **changes: Any) -> TrainConfig:
        """A copy with top-level values replaced (``None`` leaves a value as it is)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def parse_duration(value: float | int | str) -> float:
    """Seconds from a number or a text such as ``"45s"``, ``"90m"``, ``"2h"``, ``"1h30m"``.

    Examples
    --------
    >>> parse_duration("1h30m"), parse_duration("90s"), parse_duration(60), parse_duration("2.5h")
    (5400.0, 90.0, 60.0, 9000.0)
    >>> parse_duration("soon")
    Traceback (most recent call last):
    ...
    ValueError: time_limit 'soon': use seconds or a duration such as 90m, 2h, 1h30m
    """
    import re

    if isinstance(value, bool):
        raise ValueError(f"time_limit {value!r}: use seconds or a duration such as 90m, 2h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        parts = re.fullmatch(
            r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?", text
        )
        if not text or parts is None:
            raise ValueError(
                f"time_limit {value!r}: use seconds or a duration such as 90m, 2h, 1h30m"
            )
        h, m, s = (float(g) if g else 0.0 for g in parts.groups())
        seconds = 3600 * h + 60 * m + s
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"time_limit {value!r}: must be a positive, finite duration")
    return seconds


def format_duration(seconds: float | None) -> str:
    """``5400.0`` -> ``'1h30m'`` (``'-'`` for None).

    Examples
    --------
    >>> format_duration(5400), format_duration(90), format_duration(7200), format_duration(12.5)
    ('1h30m', '1m30s', '2h', '12.5s')
    """
    if seconds is None:
        return "-"
    h, rest = divmod(float(seconds), 3600)
    m, s = divmod(rest, 60)
    text = (f"{int(h)}h" if h else "") + (f"{int(m)}m" if m else "")
    if s or not text:
        text += f"{s:g}s"
    return text


def load_config(path: str | Path) -> TrainConfig:
    """Read a training config from YAML; missing values take their defaults.

    Raises
    ------
    BiounetError
        If the file is missing, is not YAML, or holds unknown or invalid values.
    """
    import yaml

    path = Path(path)
    if path.exists() and not path.is_file():
        raise BiounetError(f"{path}: cannot read the config (not a regular file)")
    if path.is_file() and path.stat().st_size > MAX_CONFIG_BYTES:
        raise BiounetError(
            f"{path}: cannot read the config (more than {MAX_CONFIG_BYTES:,} bytes; not a config)"
        )
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise BiounetError(
            f"{path}: cannot read the config (not UTF-8 text: byte {exc.start})"
        ) from None
    except (OSError, yaml.YAMLError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise BiounetError(f"{path}: cannot read the config ({reason})") from None
    if not isinstance(values, dict):
        raise BiounetError(f"{path}: a config must be a mapping of options")
    try:
        return TrainConfig.from_dict(values)
    except (TypeError, ValueError) as exc:
        raise BiounetError(f"{path}: {exc}") from None


def dump_config(config: TrainConfig) -> str:
    """The config as YAML text."""
    import yaml

    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def apply_overrides(config: TrainConfig, **sections: dict[str, Any]) -> TrainConfig:
    """Replace values section by section; ``None`` values are left as they are.

    Examples
    --------
    >>> cfg = apply_overrides(TrainConfig(), top={"lr": 0.1}, model={"features": 16})
    >>> cfg.lr, cfg.model.features, cfg.model.depth
    (0.1, 16, 4)
    """
    changes: dict[str, Any] = {}
    for name, values in sections.items():
        values = {k: v for k, v in values.items() if v is not None}
        if not values:
            continue
        if name == "top":
            changes.update(values)
        else:
            changes[name] = replace(getattr(config, name), **values)
    return replace(config, **changes)
