"""Models that ship with biounet.

``isbi2012.pt`` is trained by ``pipelines/isbi2012`` (the CPU configuration);
its model card is ``docs/model_card.md``.
"""

from __future__ import annotations

from pathlib import Path

from biounet.errors import BiounetError
from biounet.io.units import PixelSize

BUNDLED = Path(__file__).with_name("isbi2012.pt")

#: The pixel size of the bundled model's training data, ISBI 2012 (4 x 4 x 50 nm voxels).
TRAINING_PIXEL_SIZE = PixelSize(4.0, 4.0, 50.0, "nm")


def default_model_path() -> Path:
    """The bundled model's checkpoint, used when no ``--model`` is given."""
    if not BUNDLED.is_file():
        raise BiounetError(f"{BUNDLED}: no bundled model in this installation; pass --model")
    return BUNDLED
