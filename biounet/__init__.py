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
    "UNet": "biounet.network.unet",
    "UNetConfig": "biounet.network.unet",
    "Normalization": "biounet.network.normalize",
    "output_size": "biounet.network.shapes",
    "valid_input_sizes": "biounet.network.shapes",
    "halo": "biounet.network.shapes",
    "predict": "biounet.inference.predictor",
    "segment_file": "biounet.inference.files",
    "load_pairs": "biounet.training.data",
    "weight_map": "biounet.training.weight_map",
    "random_tile": "biounet.training.augment",
    "TrainConfig": "biounet.training.config",
    "train": "biounet.training.loop",
    "evaluate_isbi": "biounet.evaluation.isbi",
    "BiounetError": "biounet.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'biounet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
