"""Writing results tile by tile: tiled OME-TIFF (BigTIFF) and OME-Zarr.

Both writers take tiles as they come out of the network, so the whole
result never has to be in memory. A TIFF is written sequentially, so tiles
must arrive in file order (plane by plane, row-major within a plane): the
tiler's order. Zarr chunks can arrive in any order, which the distributed
predictor uses.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from biounet.io.read import PixelSize

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
    """

    plane_shape: tuple[int, ...]
    plane_axes: str
    height: int
    width: int
    channels: int
    dtype: np.dtype
    pixel_size: PixelSize = PixelSize()

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
    for axis, value in (("X", ps.x), ("Y", ps.y), ("Z", ps.z)):
        if value:
            meta[f"PhysicalSize{axis}"] = value
            meta[f"PhysicalSize{axis}Unit"] = ps.unit
    return meta


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

    ps = layout.pixel_size
    resolution = None
    if ps.x and ps.y and ps.unit == "µm":
        resolution = (1e4 / ps.x, 1e4 / ps.y)  # pixels per centimetre
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
            resolution=resolution,
            resolutionunit="CENTIMETER" if resolution else None,
            software="biounet",
        )


def create_zarr(path: str | Path, layout: Layout, *, chunks: tuple[int, int]) -> Any:
    """Create an OME-Zarr (v0.4, one resolution level) and return its array.

    The array has shape ``(*planes, [C,] Y, X)`` with the channel axis before
    Y when there are several channels; write with numpy slicing, in any order.
    """
    import zarr

    axes = layout.plane_axes.replace("Q", "Z").replace("I", "Z")
    shape: tuple[int, ...] = (*layout.plane_shape, layout.height, layout.width)
    chunk: tuple[int, ...] = (*(1 for _ in layout.plane_shape), *chunks)
    if layout.channels > 1:
        axes += "C"
        shape = (*layout.plane_shape, layout.channels, layout.height, layout.width)
        chunk = (*(1 for _ in layout.plane_shape), layout.channels, *chunks)
    axes += "YX"
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    array = group.create_array(
        "0",
        shape=shape,
        chunks=chunk,
        dtype=layout.dtype,
        fill_value=0,
        chunk_key_encoding={"name": "v2", "separator": "/"},
    )
    kinds = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}
    ps = layout.pixel_size
    sizes = {"X": ps.x, "Y": ps.y, "Z": ps.z}
    scale = [float(sizes.get(a) or 1.0) for a in axes]
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "name": Path(path).stem,
            "axes": [
                {
                    "name": a.lower(),
                    "type": kinds.get(a, "space"),
                    **(
                        {"unit": "micrometer"}
                        if a in "XYZ" and ps.unit == "µm" and sizes[a]
                        else {}
                    ),
                }
                for a in axes
            ],
            "datasets": [
                {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}
            ],
        }
    ]
    return array


def zarr_axes(path: str | Path) -> str:
    """Axis letters of an OME-Zarr written by :func:`create_zarr`."""
    attrs = json.loads((Path(path) / ".zattrs").read_text())
    return "".join(a["name"].upper() for a in attrs["multiscales"][0]["axes"])


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
    """
    if Path(path).suffix.lower() == ".zarr":
        array = create_zarr(path, layout, chunks=tile)
        for plane, rows, cols, data in tiles:
            array[zarr_key(layout, plane, rows, cols)] = (
                np.moveaxis(data, -1, 0) if layout.channels > 1 else data
            )
        return
    write_tiff(path, (data for *_, data in tiles), layout, tile=tile, compression=compression)
