"""Writing results tile by tile: tiled OME-TIFF (BigTIFF) and multiscale OME-Zarr.

Both writers take tiles as they come out of the network, so the whole
result never has to be in memory. A TIFF is written sequentially, so tiles
must arrive in file order (plane by plane, row-major within a plane): the
tiler's order. Zarr chunks can arrive in any order, which the distributed
predictor uses.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from biounet.io.atomic import published_name, scratch_folder
from biounet.io.units import LENGTH_UNITS, NGFF_UNITS, PixelSize, tiff_resolution

COMPRESSIONS = ("none", "zlib", "zstd", "lzw")


@dataclass(frozen=True)
class Layout:
    """Shape and naming of an output image.

    Attributes
    ----------
    plane_shape : tuple of int
        Sizes of the plane axes (empty for a 2D image).
    plane_axes : str
        Their letters, e.g. ``"Z"`` or ``"TZ"``.
    height, width : int
    channels : int
        Values per pixel (1 for masks and labels; K for K-class probabilities).
    dtype : numpy dtype
    pixel_size : PixelSize
    kind : {'image', 'labels', 'mask', 'classes', 'probabilities'}
        What the values are: chooses the pyramid's downsampling (nearest
        neighbour except for probabilities and images) and the metadata that
        states a label kind.
    """

    plane_shape: tuple[int, ...]
    plane_axes: str
    height: int
    width: int
    channels: int
    dtype: np.dtype
    pixel_size: PixelSize = PixelSize()
    kind: str = "image"

    @property
    def shape(self) -> tuple[int, ...]:
        """Array shape: planes, Y, X, and a trailing sample axis if channels > 1."""
        tail = (self.channels,) if self.channels > 1 else ()
        return (*self.plane_shape, self.height, self.width, *tail)

    @property
    def axes(self) -> str:
        """Axis letters of :attr:`shape` (``S`` for the per-pixel channels)."""
        return self.plane_axes + "YX" + ("S" if self.channels > 1 else "")


def _ome_metadata(layout: Layout) -> dict[str, Any]:
    meta: dict[str, Any] = {"axes": layout.axes.replace("Q", "Z").replace("I", "Z")}
    ps = layout.pixel_size
    # sizes without a length unit are left out: OME would read them as micrometres
    for axis, value in (("X", ps.x), ("Y", ps.y), ("Z", ps.z)):
        if value and ps.unit in LENGTH_UNITS:
            meta[f"PhysicalSize{axis}"] = value
            meta[f"PhysicalSize{axis}Unit"] = ps.unit
    if layout.kind in KIND_DESCRIPTIONS:
        meta["Description"] = KIND_DESCRIPTIONS[layout.kind]
    return meta


#: The OME-XML image description of label outputs (read back by
#: :func:`biounet.io.read.stated_label_kind`).
KIND_DESCRIPTIONS: dict[str, str] = {"labels": "instance labels", "mask": "binary mask"}


def write_tiff(
    path: str | Path,
    tiles: Iterable[np.ndarray],
    layout: Layout,
    *,
    tile: tuple[int, int],
    compression: str = "zlib",
) -> None:
    """Write a tiled BigTIFF/OME-TIFF from tiles that arrive in file order.

    Parameters
    ----------
    path : str or Path
        Destination (the caller writes to a temporary name and renames).
    tiles : iterable of ndarray of shape (h, w) or (h, w, channels)
        Plane by plane, row-major; ``h <= tile[0]``, ``w <= tile[1]`` at the
        right and bottom edges.
    layout : Layout
    tile : (int, int)
        TIFF tile size, multiples of 16.
    compression : {'none', 'zlib', 'zstd', 'lzw'}
    """
    import tifffile

    resolution = tiff_resolution(layout.pixel_size)
    with tifffile.TiffWriter(path, bigtiff=True, ome=True) as tw:
        tw.write(
            iter(tiles),
            shape=layout.shape,
            dtype=layout.dtype,
            tile=tile,
            photometric="minisblack",
            planarconfig="contig" if layout.channels > 1 else None,
            compression=None if compression == "none" else compression,
            predictor=None,
            metadata=_ome_metadata(layout),
            resolution=resolution[0] if resolution else None,
            resolutionunit=resolution[1] if resolution else None,
            software="biounet",
        )


def _zarr_axes(layout: Layout) -> str:
    """NGFF axis letters of the stored array: planes, [C,] Y, X."""
    axes = layout.plane_axes.replace("Q", "Z").replace("I", "Z")
    return axes + ("C" if layout.channels > 1 else "") + "YX"


def zarr_shape(layout: Layout, chunks: tuple[int, int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Shape and chunks of the stored array: ``(*planes, [C,] Y, X)``, one plane per chunk."""
    lead = tuple(layout.plane_shape)
    ones = tuple(1 for _ in lead)
    if layout.channels > 1:
        return (*lead, layout.channels, layout.height, layout.width), (
            *ones,
            layout.channels,
            *chunks,
        )
    return (*lead, layout.height, layout.width), (*ones, *chunks)


def create_zarr(path: str | Path, layout: Layout, *, chunks: tuple[int, int]) -> Any:
    """Create the full-resolution array (a plain zarr array) that tiles are written into.

    The array has shape ``(*planes, [C,] Y, X)`` with the channel axis before
    Y when there are several channels; write with numpy slicing (see
    :func:`zarr_key`), in any order, then turn it into an OME-Zarr with
    :func:`write_ome_zarr`.
    """
    import zarr

    shape, chunk = zarr_shape(layout, chunks)
    return zarr.open_array(
        str(path), mode="w", shape=shape, chunks=chunk, dtype=layout.dtype, fill_value=0
    )


#: The longest side the smallest pyramid level may have: viewers show an overview of any
#: image that is larger (napari shows a one-level "pyramid" as a plain layer).
SMALLEST_LEVEL = 256


def pyramid_levels(height: int, width: int, chunks: tuple[int, int]) -> int:
    """Resolution levels: halve until a level fits one chunk and neither side exceeds 256 px.

    Each level halves Y and X (rounding up); the smallest level fits in one
    chunk and its longer side is at most :data:`SMALLEST_LEVEL` (so between
    129 and 256 px unless the chunks are smaller). An image that is already
    that small has one level.

    Examples
    --------
    >>> pyramid_levels(16384, 16384, (512, 512)), pyramid_levels(600, 700, (128, 128))
    (7, 4)
    >>> pyramid_levels(512, 512, (512, 512)), pyramid_levels(300, 200, (512, 512))
    (2, 2)
    >>> pyramid_levels(256, 100, (512, 512))
    1
    """
    levels = 1
    while height > chunks[0] or width > chunks[1] or max(height, width) > SMALLEST_LEVEL:
        height, width, levels = (height + 1) // 2, (width + 1) // 2, levels + 1
    return levels


def write_ome_zarr(
    path: str | Path, level0: Any, layout: Layout, *, chunks: tuple[int, int]
) -> int:
    """Write an OME-Zarr (NGFF 0.4) multiscale image from a full-resolution zarr array.

    The pyramid is built and written by ome-zarr-py through Dask, chunk by
    chunk, so memory stays bounded whatever the size. Y and X are halved per
    level (planes and channels are kept): nearest neighbour for labels and
    masks, the 2x2 mean for probabilities. The physical scale carries the
    pixel size and its unit (``nanometer``, ``micrometer``, ...). Instance
    labels also get NGFF ``image-label`` metadata, so viewers open them as
    labels. The multiscales ``name`` is the stem of the name the output is
    published under (:func:`biounet.io.atomic.published_name`).

    Parameters
    ----------
    path : str or Path
        Destination folder (``*.zarr``).
    level0 : zarr array
        As made by :func:`create_zarr`, complete.
    layout : Layout
    chunks : (int, int)
        Y/X chunk size of every level.

    Returns
    -------
    int
        The number of resolution levels written.
    """
    import dask
    import dask.array as da
    import zarr

    with warnings.catch_warnings():
        # ome-zarr 0.18 builds a deprecated Scaler as a default argument at import time
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.format import FormatV04
        from ome_zarr.scale import Methods
        from ome_zarr.writer import add_metadata, write_image

    axes = _zarr_axes(layout).lower()
    ps = layout.pixel_size
    unit = NGFF_UNITS.get(ps.unit)
    sizes = {a: v for a, v in (("x", ps.x), ("y", ps.y), ("z", ps.z)) if v and a in axes}
    levels = pyramid_levels(layout.height, layout.width, chunks)
    mean = layout.kind in ("probabilities", "image")
    _, chunk = zarr_shape(layout, chunks)
    fmt = FormatV04()
    group = zarr.open_group(str(path), mode="w", zarr_format=fmt.zarr_format)
    with dask.config.set(scheduler="threads"):
        write_image(
            da.from_zarr(level0),
            group,
            scale_factors=[{"y": 2**k, "x": 2**k} for k in range(1, levels)],
            method=Methods.LOCAL_MEAN if mean else Methods.NEAREST,
            fmt=fmt,
            axes=axes,
            scale={a: float(sizes.get(a, 1.0)) for a in axes},
            axes_units=dict.fromkeys(sizes, unit) if unit and sizes else None,
            storage_options={"chunks": chunk},
            name=Path(published_name(path)).stem,  # not the temporary name written to
        )
    if layout.kind == "labels":
        add_metadata(group, {"image-label": {"version": fmt.version}}, fmt=fmt)
    return levels


def zarr_key(layout: Layout, plane: int, rows: slice, cols: slice) -> tuple:
    """Index of one tile of one plane in an array made by :func:`create_zarr`."""
    index = np.unravel_index(plane, layout.plane_shape) if layout.plane_shape else ()
    lead = tuple(int(i) for i in index)
    return (*lead, slice(None), rows, cols) if layout.channels > 1 else (*lead, rows, cols)


def write_tiles(
    path: Path,
    tiles: Iterator[tuple[int, slice, slice, np.ndarray]],
    layout: Layout,
    tile: tuple[int, int],
    compression: str,
) -> None:
    """Write ``(plane, rows, cols, data)`` items to a TIFF or, for ``*.zarr``, an OME-Zarr.

    Parameters
    ----------
    path : Path
        Destination (its suffix chooses the format).
    tiles : iterator of (int, slice, slice, ndarray of shape (h, w[, C]))
        In file order (plane by plane, row-major) for a TIFF; any order for Zarr.
    layout : Layout
    tile : (int, int)
        TIFF tile or Zarr chunk size.
    compression : {'none', 'zlib', 'zstd', 'lzw'}
        TIFF compression (OME-Zarr uses its default codec).

    An OME-Zarr's full resolution is collected in a scratch array beside
    `path`, then written with its pyramid by :func:`write_ome_zarr`.
    """
    if Path(path).suffix.lower() == ".zarr":
        with scratch_folder(path) as scratch:  # beside path; swept if the process dies
            array = create_zarr(scratch / "level0.zarr", layout, chunks=tile)
            for plane, rows, cols, data in tiles:
                array[zarr_key(layout, plane, rows, cols)] = (
                    np.moveaxis(data, -1, 0) if layout.channels > 1 else data
                )
            write_ome_zarr(path, array, layout, chunks=tile)
        return
    write_tiff(path, (data for *_, data in tiles), layout, tile=tile, compression=compression)
