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

#: Public name -> the module that defines it. No public name is also the name of
#: a submodule of ``biounet`` (Python would hand out the module instead once it
#: is imported); tests/test_api.py checks both.
_EXPORTS = {
    # network
    "UNet": "biounet.network.unet",
    "UNetConfig": "biounet.network.unet",
    "load_model": "biounet.network.unet",
    "Normalization": "biounet.network.normalize",
    "output_size": "biounet.network.shapes",
    "valid_input_sizes": "biounet.network.shapes",
    "halo": "biounet.network.shapes",
    # inference
    "predict": "biounet.inference.segmentation",
    "segment": "biounet.inference.segmentation",
    "segment_into": "biounet.inference.segmentation",
    "plan_segmentation": "biounet.inference.segmentation",
    "ArraySink": "biounet.inference.sinks",
    "FileSink": "biounet.inference.sinks",
    "segment_file": "biounet.inference.files",
    "predict_files": "biounet.inference.files",
    "TileOptions": "biounet.options",
    "OutputOptions": "biounet.options",
    "InstanceOptions": "biounet.options",
    # training
    "load_pairs": "biounet.training.data",
    "weight_map": "biounet.training.weight_map",
    "random_tile": "biounet.training.augment",
    "TrainConfig": "biounet.training.config",
    "train": "biounet.training.loop",
    "run_training": "biounet.training.run",
    # evaluation
    "evaluate_isbi": "biounet.evaluation.isbi",
    "evaluate_files": "biounet.evaluation.files",
    # errors
    "BiounetError": "biounet.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'biounet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
