"""napari sample data: the images of ``sample_data/``, generated on the fly.

The files in the repository's ``sample_data/`` folder are made by
``sample_data/make_samples.py`` from the seeded generators of
:mod:`biounet.synthetic`; the functions here call the same generators with
the same seeds, so napari shows exactly those images without shipping them
in the package. Each returns napari layer-data tuples ``(data, metadata,
layer_type)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from biounet import synthetic

#: Pixel size of the EM samples in micrometres (4 nm, like ISBI 2012).
EM_PIXEL_UM = 0.004

LayerData = tuple[np.ndarray, dict[str, Any], str]


def _em_slice() -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    image, cells = synthetic.em_like((512, 512), rng=np.random.default_rng(2026))
    return image, cells, {"scale": (EM_PIXEL_UM, EM_PIXEL_UM), "units": ("um", "um")}


def em_synthetic() -> list[LayerData]:
    """``sample_data/em_synthetic.tif`` (512 x 512, 4 nm pixels), alone.

    The one layer it adds is the selected one, so *Segment (U-Net)* segments
    it straight away; its cells are the sample :func:`em_synthetic_cells`.

    Examples
    --------
    >>> [(meta["name"], kind) for _, meta, kind in em_synthetic()]
    [('em_synthetic', 'image')]
    """
    image, _, common = _em_slice()
    return [(image, {"name": "em_synthetic", **common}, "image")]


def em_synthetic_cells() -> list[LayerData]:
    """The cells of ``em_synthetic`` as a labels layer placed on it.

    Returns
    -------
    list of tuple
        The cell interiors (``cells`` of :func:`biounet.synthetic.em_like`:
        0 = membrane, 1..K cells), 4 nm pixels.
        ``sample_data/em_synthetic_labels.tif`` is ``cells > 0`` as 0/255.

    Examples
    --------
    >>> [(meta["name"], kind) for _, meta, kind in em_synthetic_cells()]
    [('em_synthetic cells', 'labels')]
    """
    _, cells, common = _em_slice()
    return [(cells, {"name": "em_synthetic cells", "opacity": 0.5, **common}, "labels")]


def em_stack() -> list[LayerData]:
    """``sample_data/em_stack.tif``: three 256 x 256 EM-like planes (ZYX).

    Examples
    --------
    >>> em_stack()[0][0].shape
    (3, 256, 256)
    """
    stack = np.stack(
        [synthetic.em_like((256, 256), rng=np.random.default_rng(s))[0] for s in range(3)]
    )
    scale = (1.0, EM_PIXEL_UM, EM_PIXEL_UM)
    return [(stack, {"name": "em_stack", "scale": scale}, "image")]


def touching_cells() -> list[LayerData]:
    """``sample_data/touching_cells.tif`` and ``touching_cells_labels.tif`` (256 x 256).

    Examples
    --------
    >>> [(data.dtype.name, kind) for data, _, kind in touching_cells()]
    [('uint8', 'image'), ('uint16', 'labels')]
    """
    image, instances = synthetic.touching_cells(
        (256, 256), n_cells=14, rng=np.random.default_rng(3)
    )
    return [
        (image, {"name": "touching_cells"}, "image"),
        (instances.astype(np.uint16), {"name": "touching_cells labels"}, "labels"),
    ]
