"""Overlap-tile geometry with mirrored borders (Ronneberger et al. 2015, Fig. 2).

"The segmentation map only contains the pixels, for which the full context
is available in the input image. [...] To predict the pixels in the border
region of the image, the missing context is extrapolated by mirroring the
input image."

The image is seen through an infinite mirrored extension (``reflect``, no
edge duplication). An output tile of ``T`` pixels per axis is predicted from
the input window that starts ``context`` pixels before it. Tile origins are
multiples of ``T``, and ``T`` is a multiple of ``2**depth``, so every tile
sees the same max-pooling grid as the whole image would: tiled output
equals whole-image output (PAPER.md item 12). With unpadded convolutions an
input of a valid size ``s`` yields ``s - 2 * halo`` outputs, of which the
first ``T`` (the largest multiple of ``2**depth``) are kept.

Nothing here knows about torch: the network is any callable mapping a batch
of input windows to a batch of outputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from biounet.network import shapes

#: A batch predictor: raw windows (N, C, sy, sx) -> outputs (N, K, oy, ox), oy >= tile,
#: output index 0 at window position ``context``.
PredictFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class TileSpec:
    """Geometry of overlap-tile prediction.

    Attributes
    ----------
    tile : (int, int)
        Output pixels kept per tile (rows, columns); multiples of `align`.
    window : (int, int)
        Input window per tile, a valid network input size per axis.
    context : int
        Input pixels before the first kept output pixel (the halo).
    align : int
        Tile sizes and origins are multiples of it: the pooling-grid period
        ``2**depth``, or a multiple of it (e.g. to make 16-px TIFF tiles).
    """

    tile: tuple[int, int]
    window: tuple[int, int]
    context: int
    align: int

    def fit(self, height: int, width: int) -> TileSpec:
        """Shrink the tile, axis by axis, to no more than the image needs."""
        return self.shrunk((height, width))

    def balance(self, height: int, width: int) -> TileSpec:
        """The same number of tiles per axis as this spec needs, each as small as they allow.

        A 2048 px axis needs two tiles of up to 1136 px; two of 1024 px cover
        it as well, with smaller windows (less computation, same output).

        Examples
        --------
        >>> tile_spec(1324).balance(2048, 600).tile
        (1024, 608)
        """
        counts = (math.ceil(height / self.tile[0]), math.ceil(width / self.tile[1]))
        return self.shrunk((math.ceil(height / counts[0]), math.ceil(width / counts[1])))

    def shrunk(self, needs: tuple[int, int]) -> TileSpec:
        """Tiles no larger than `needs` px per axis (rounded up to `align`), windows alike."""
        tile, window = [], []
        for t, w, n in zip(self.tile, self.window, needs, strict=True):
            shrink = max(0, t - math.ceil(n / self.align) * self.align)
            tile.append(t - shrink)
            window.append(w - shrink)
        return TileSpec((tile[0], tile[1]), (window[0], window[1]), self.context, self.align)

    def count(self, height: int, width: int) -> int:
        """The number of tiles that cover an image of ``height x width`` pixels."""
        return math.ceil(height / self.tile[0]) * math.ceil(width / self.tile[1])


def tile_spec(
    window: int | tuple[int, int],
    *,
    depth: int = 4,
    padding: shapes.Padding = "valid",
    unit: int = 1,
) -> TileSpec:
    """Tile geometry for a network input window of `window` pixels.

    Parameters
    ----------
    window : int or (int, int)
        Network input size per axis; must be valid for the network.
    depth, padding
        The network's depth and padding (see :class:`biounet.network.unet.UNetConfig`).
    unit : int
        Make tiles multiples of `unit` too (16 for TIFF tiles).

    Examples
    --------
    >>> tile_spec(572)
    TileSpec(tile=(384, 384), window=(572, 572), context=92, align=16)
    >>> tile_spec(256, padding="same")
    TileSpec(tile=(32, 32), window=(256, 256), context=112, align=16)
    """
    sizes = (window, window) if isinstance(window, int) else tuple(window)
    align = math.lcm(shapes.size_step(depth), unit)
    context = tile_context(depth=depth, padding=padding)
    tiles = []
    for s in sizes:
        out = shapes.output_size(s, depth=depth, padding=padding)
        kept = (out if padding == "valid" else s - 2 * context) // align * align
        if kept < align:
            raise ValueError(f"input window {s} leaves no output tile after {context} px context")
        tiles.append(kept)
    return TileSpec((tiles[0], tiles[1]), (sizes[0], sizes[1]), context, align)


def tile_context(*, depth: int = 4, padding: shapes.Padding = "valid") -> int:
    """Input pixels a tile needs before its first kept output pixel.

    For ``valid`` networks this is the halo (92 px at depth 4). For ``same``
    networks it is the receptive-field radius rounded up to a multiple of
    ``2**(depth - 1)``, so that windows stay multiples of ``2**depth`` and
    the zero padding at a window's border never reaches a kept pixel.

    Examples
    --------
    >>> tile_context(), tile_context(padding="same")
    (92, 112)
    """
    if padding == "valid":
        return shapes.halo(depth=depth)
    half = shapes.size_step(depth) // 2
    return -(-shapes.halo(depth=depth, padding="same") // half) * half


def reflect_indices(start: int, stop: int, n: int) -> np.ndarray:
    """Indices into an axis of length `n` for positions ``start..stop-1`` under mirroring.

    The extension is the infinite ``reflect`` mirror (``np.pad(mode="reflect")``
    applied as often as needed): ``-1 -> 1``, ``n -> n - 2``. A length-1 axis
    repeats its only pixel.

    Examples
    --------
    >>> reflect_indices(-3, 7, 4)
    array([3, 2, 1, 0, 1, 2, 3, 2, 1, 0])
    """
    pos = np.arange(start, stop)
    if n == 1:
        return np.zeros_like(pos)
    period = 2 * (n - 1)
    pos = np.mod(pos, period)
    return np.where(pos < n, pos, period - pos)


def read_window(
    read: Callable[[slice, slice], np.ndarray],
    shape: tuple[int, int],
    rows: tuple[int, int],
    cols: tuple[int, int],
) -> np.ndarray:
    """Read a window of the mirrored image, touching only the pixels it needs.

    Parameters
    ----------
    read : callable
        ``read(row_slice, col_slice) -> ndarray (C, h, w)`` for in-bounds slices.
    shape : (H, W)
        Image size.
    rows, cols : (start, stop)
        Window in image coordinates; may extend past the image on any side.

    Returns
    -------
    ndarray of shape (C, rows[1] - rows[0], cols[1] - cols[0])
    """
    iy = reflect_indices(rows[0], rows[1], shape[0])
    ix = reflect_indices(cols[0], cols[1], shape[1])
    y0, y1, x0, x1 = int(iy.min()), int(iy.max()) + 1, int(ix.min()), int(ix.max()) + 1
    block = read(slice(y0, y1), slice(x0, x1))
    if rows[0] < 0 or rows[1] > shape[0] or len(iy) != y1 - y0:
        block = block[:, iy - y0]
    if cols[0] < 0 or cols[1] > shape[1] or len(ix) != x1 - x0:
        block = block[:, :, ix - x0]
    return block


@dataclass(frozen=True)
class Tile:
    """One output tile: where its kept output goes and where its input starts."""

    rows: slice
    cols: slice
    origin: tuple[int, int]


def tile_grid(
    shape: tuple[int, int], spec: TileSpec, region: tuple[slice, slice] | None = None
) -> list[Tile]:
    """Tiles covering `region` (default: the whole image) in row-major order.

    Parameters
    ----------
    shape : (H, W)
        Image size.
    spec : TileSpec
    region : (row slice, column slice), optional
        Output region; its start must be a multiple of the tile size so that
        any split of an image into regions reproduces the same tiles.

    Returns
    -------
    list of Tile
    """
    rows, cols = region or (slice(0, shape[0]), slice(0, shape[1]))
    ty, tx = spec.tile
    if rows.start % ty or cols.start % tx:
        raise ValueError(
            f"region start ({rows.start}, {cols.start}) is not on the tile grid {ty}x{tx}"
        )
    tiles = []
    for y in range(rows.start, min(rows.stop, shape[0]), ty):
        for x in range(cols.start, min(cols.stop, shape[1]), tx):
            tiles.append(
                Tile(
                    slice(y, min(y + ty, rows.stop, shape[0])),
                    slice(x, min(x + tx, cols.stop, shape[1])),
                    (y - spec.context, x - spec.context),
                )
            )
    return tiles


def _batches(items: list[Tile], size: int) -> Iterator[list[Tile]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def iter_predictions(
    read: Callable[[slice, slice], np.ndarray],
    shape: tuple[int, int],
    predict: PredictFn,
    spec: TileSpec,
    tiles: Iterable[Tile],
    *,
    batch_size: int = 1,
) -> Iterator[tuple[Tile, np.ndarray]]:
    """Predict tiles batch by batch; yield each tile with its kept output.

    Parameters
    ----------
    read : callable
        ``read(row_slice, col_slice) -> ndarray (C, h, w)`` of the image.
    shape : (H, W)
    predict : callable
        Batch predictor, ``(N, C, sy, sx) -> (N, K, oy, ox)``; output index 0
        is window position ``spec.context`` (the first kept pixel).
    spec : TileSpec
    tiles : iterable of Tile
    batch_size : int

    Yields
    ------
    tile : Tile
    output : ndarray of shape (K, h, w)
        The tile's kept output, cropped at the image border.
    """
    sy, sx = spec.window
    for batch in _batches(list(tiles), batch_size):
        windows = np.stack(
            [
                read_window(
                    read, shape, (t.origin[0], t.origin[0] + sy), (t.origin[1], t.origin[1] + sx)
                )
                for t in batch
            ]
        )
        out = predict(windows)
        for tile, o in zip(batch, out, strict=True):
            h, w = tile.rows.stop - tile.rows.start, tile.cols.stop - tile.cols.start
            yield tile, o[:, :h, :w]


def predict_tiled(
    image: Any,
    predict: PredictFn,
    spec: TileSpec,
    *,
    batch_size: int = 1,
    region: tuple[slice, slice] | None = None,
    on_tile: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Predict an image (or a region of it) tile by tile; return the assembled output.

    Parameters
    ----------
    image : array-like of shape (C, H, W)
        Anything that supports slicing: ndarray, memmap, zarr array.
    predict : callable
        Batch predictor, ``(N, C, sy, sx) -> (N, K, oy, ox)``.
    spec : TileSpec
    batch_size : int
    region : (row slice, column slice), optional
        Output region whose start lies on the tile grid (see :func:`tile_grid`).
    on_tile : callable, optional
        Called with each tile's number of output pixels once it is done.

    Returns
    -------
    ndarray of shape (K, h, w)
        The region's output; `h`, `w` are the region's size within the image.

    Examples
    --------
    An identity "network" that returns the centre of its window reproduces
    the image exactly:

    >>> spec = TileSpec(tile=(16, 16), window=(20, 20), context=2, align=16)
    >>> centre = lambda b: b[:, :, 2:-2, 2:-2]
    >>> image = np.arange(2 * 37 * 23).reshape(2, 37, 23)
    >>> bool((predict_tiled(image, centre, spec) == image).all())
    True
    """
    shape = (int(image.shape[-2]), int(image.shape[-1]))
    rows, cols = region or (slice(0, shape[0]), slice(0, shape[1]))
    rows = slice(rows.start, min(rows.stop, shape[0]))
    cols = slice(cols.start, min(cols.stop, shape[1]))
    tiles = tile_grid(shape, spec, (rows, cols))

    def read(r: slice, c: slice) -> np.ndarray:
        return np.asarray(image[:, r, c])

    out = None
    for tile, o in iter_predictions(read, shape, predict, spec, tiles, batch_size=batch_size):
        if out is None:
            out = np.empty((o.shape[0], rows.stop - rows.start, cols.stop - cols.start), o.dtype)
        out[
            :,
            tile.rows.start - rows.start : tile.rows.stop - rows.start,
            tile.cols.start - cols.start : tile.cols.stop - cols.start,
        ] = o
        if on_tile is not None:
            on_tile(o.shape[-2] * o.shape[-1])
    assert out is not None
    return out
