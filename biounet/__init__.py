"""biounet: the U-Net of Ronneberger, Fischer and Brox (MICCAI 2015) for microscopy.

The public names are loaded lazily so that ``import biounet`` stays cheap
(``biounet --help`` must not wait for torch).

References
----------
.. [1] O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for
       Biomedical Image Segmentation", MICCAI 2015, arXiv:1505.04597.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "UNet": "biounet.model",
    "UNetConfig": "biounet.model",
    "Normalization": "biounet.normalize",
    "output_size": "biounet.shapes",
    "valid_input_sizes": "biounet.shapes",
    "halo": "biounet.shapes",
    "predict": "biounet.predict",
    "segment_file": "biounet.segment",
    "load_pairs": "biounet.data",
    "weight_map": "biounet.weights",
    "random_tile": "biounet.augment",
    "TrainConfig": "biounet.config",
    "train": "biounet.train",
    "evaluate_isbi": "biounet.metrics",
    "BiounetError": "biounet.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'biounet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
