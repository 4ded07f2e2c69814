"""Models that ship with biounet.

``isbi2012.pt`` is trained by ``pipelines/isbi2012`` (the CPU configuration);
its model card is ``docs/model_card.md``.
"""

from __future__ import annotations

from pathlib import Path

from biounet.errors import BiounetError

BUNDLED = Path(__file__).with_name("isbi2012.pt")


def default_model_path() -> Path:
    """The bundled model's checkpoint, used when no ``--model`` is given."""
    if not BUNDLED.is_file():
        raise BiounetError(f"{BUNDLED}: no bundled model in this installation; pass --model")
    return BUNDLED
