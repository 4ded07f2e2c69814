"""What users choose for prediction and where it runs, as plain values: importable without torch.

The command line builds its choices and defaults from these (``biounet --help``
does not wait for torch), and the library takes them as frozen dataclasses:
:class:`TileOptions` (how an image is cut) and :class:`OutputOptions` (what is
written), plus the choices of test-time averaging and precision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from biounet.errors import ParameterError
from biounet.io.units import PixelSize
from biounet.io.write import COMPRESSIONS

#: Test-time averaging: none, the 8 flips/rotations (exact), 7 rotations by 360/7.
TTA = Literal["none", "d4", "rot7"]
TTA_CHOICES: tuple[str, ...] = ("none", "d4", "rot7")

#: Mixed precision on CUDA (the CPU always computes in float32).
Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")

#: Network variants (see :class:`biounet.network.unet.UNetConfig`).
PADDINGS: tuple[str, ...] = ("valid", "same")
FLAVOURS: tuple[str, ...] = ("paper", "release")

#: Output formats of ``biounet predict`` and their suffixes.
OUTPUT_FORMATS: dict[str, str] = {"tiff": ".tif", "zarr": ".zarr"}

#: What a label image holds: binary masks (objects = 4-connected components) or instances;
#: ``auto``: what the file's metadata states, else instances if it has more than two values.
LABEL_KINDS: tuple[str, ...] = ("auto", "binary", "instance")
#: Which value of a binary mask marks objects (ISBI: high, 255 = cell).
FOREGROUNDS: tuple[str, ...] = ("high", "low")

#: How probabilities become instances (see :mod:`biounet.inference.instances`).
Method = Literal["components", "watershed", "distance"]
INSTANCE_METHODS: tuple[str, ...] = ("components", "watershed", "distance")


@dataclass(frozen=True)
class InstanceOptions:
    """How probabilities become instance labels (see :mod:`biounet.inference.instances`).

    Parameters
    ----------
    method : {'components', 'watershed', 'distance'}
    threshold : float
        Foreground is ``probability > threshold``.
    seed_threshold : float
        Watershed seeds are components of ``probability > seed_threshold``.
    min_size : int
        Smallest object kept, in pixels.
    connectivity : {1, 2}
        1: 4-connected (the ISBI convention), 2: 8-connected.
    split_depth : float
        The distance split's seeds: maxima of the distance to the background
        that stand at least this many pixels above the neck to a higher one.
    split_radius : float
        The distance split's smallest cell: a maximum of the distance under
        this many pixels seeds no cell of its own (0: every maximum may).

    Raises
    ------
    ParameterError
        A value out of range, named by its field (``threshold=1.5: ...``).
    """

    method: Method = "components"
    threshold: float = 0.5
    seed_threshold: float = 0.9
    min_size: int = 0
    connectivity: int = 1
    split_depth: float = 2.0
    split_radius: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in INSTANCE_METHODS:
            choices = ", ".join(INSTANCE_METHODS)
            raise ParameterError("method", self.method, f"choose from {choices}")
        if not self.split_depth > 0:  # also refuses NaN
            raise ParameterError("split_depth", self.split_depth, "must be > 0 pixels")
        if not self.split_radius >= 0:
            raise ParameterError("split_radius", self.split_radius, "must be >= 0 pixels")
        if self.connectivity not in (1, 2):
            raise ParameterError("connectivity", self.connectivity, "must be 1 or 2")
        if self.min_size < 0:
            raise ParameterError("min_size", self.min_size, "must be >= 0")
        for name in ("threshold", "seed_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:  # also refuses NaN
                raise ParameterError(name, value, "must be a probability in [0, 1]")


@dataclass(frozen=True)
class TileOptions:
    """How the image is cut into tiles.

    Parameters
    ----------
    window : int, optional
        Network input size per tile (a valid size); default: the largest that
        fits `memory_bytes`.
    batch_size : int
        Tiles per forward pass.
    memory_bytes : int, optional
        Activation-memory budget for the default window.
    tta : {'none', 'd4', 'rot7'}
        Test-time averaging.
    """

    window: int | None = None
    batch_size: int = 1
    memory_bytes: int | None = None
    tta: TTA = "none"

    def __post_init__(self) -> None:
        if self.window is not None and self.window < 1:
            raise ParameterError("window", self.window, "must be a positive valid input size")
        if self.batch_size < 1:
            raise ParameterError("batch_size", self.batch_size, "must be at least 1")
        if self.memory_bytes is not None and self.memory_bytes < 2**20:
            raise ParameterError("memory_bytes", self.memory_bytes, "must be at least 1 MiB")
        if self.tta not in TTA_CHOICES:
            raise ParameterError("tta", self.tta, f"choose from {', '.join(TTA_CHOICES)}")


OutputKind = Literal["probabilities", "mask", "labels"]
OUTPUT_KINDS: tuple[str, ...] = ("labels", "mask", "probabilities")
PROBABILITY_DTYPES: tuple[str, ...] = ("float32", "uint16", "uint8")


@dataclass(frozen=True)
class OutputOptions:
    """What is written.

    Parameters
    ----------
    kind : {'labels', 'mask', 'probabilities'}
        ``probabilities``: the foreground probability (two classes) or all
        class probabilities (more classes, as a trailing sample axis).
        ``mask``: 0/255 foreground mask (two classes) or the class index.
        ``labels``: instance labels (see :mod:`biounet.inference.instances`).
    dtype : {'float32', 'uint16', 'uint8'}
        Probabilities as floats or scaled to the integer range.
    instances : InstanceOptions
        Threshold (also used for ``mask``), method and minimum size.
    compression : {'none', 'zlib', 'zstd', 'lzw'}
        TIFF compression (OME-Zarr uses its default codec).
    pixel_size : PixelSize, optional
        The pixel size written into the output, replacing the one the input
        states (X and Y; the input's Z spacing is kept): ``--pixel-size``.
        Default: the input's.
    """

    kind: OutputKind = "labels"
    dtype: str = "float32"
    instances: InstanceOptions = field(default_factory=InstanceOptions)
    compression: str = "zlib"
    pixel_size: PixelSize | None = None

    def __post_init__(self) -> None:
        for name, choices in (
            ("kind", OUTPUT_KINDS),
            ("dtype", PROBABILITY_DTYPES),
            ("compression", COMPRESSIONS),
        ):
            if getattr(self, name) not in choices:
                raise ParameterError(name, getattr(self, name), f"choose from {', '.join(choices)}")
        if self.pixel_size is not None and not self.pixel_size.known:
            raise ParameterError("pixel_size", self.pixel_size, "needs X, Y and a length unit")
