"""Where a prediction's result goes: an array in memory, or a file published atomically.

A sink takes the output tiles of :func:`biounet.inference.segmentation.segment_into`
(``write``) and lends scratch arrays for instance labelling (``scratch``):
numpy arrays in memory, zarr arrays on disk beside the output for files, so
that memory does not grow with the image.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from biounet.io.atomic import atomic_output, scratch_folder
from biounet.io.write import Layout, write_tiles

#: ``(plane, rows, cols, data)``: one output tile, data of shape (h, w) or (h, w, C).
Tiles = Iterator[tuple[int, slice, slice, np.ndarray]]


class Sink(Protocol):
    """What :func:`~biounet.inference.segmentation.segment_into` writes to."""

    def scratch(
        self, name: str, shape: tuple[int, ...], chunks: tuple[int, ...], dtype: Any
    ) -> Any:
        """A zero-filled array-like for intermediate results (e.g. provisional labels)."""
        ...  # pragma: no cover

    def write(self, tiles: Tiles, layout: Layout, tile: tuple[int, int], compression: str) -> None:
        """Take the output, tiles in file order (plane by plane, row-major)."""
        ...  # pragma: no cover


class ArraySink:
    """The result as an in-memory array.

    Examples
    --------
    >>> sink = ArraySink()
    >>> layout = Layout((), "", 2, 3, 1, np.dtype(np.uint8))
    >>> sink.write(iter([(0, slice(0, 2), slice(0, 3), np.ones((2, 3)))]), layout, (16, 16), "")
    >>> sink.result().tolist()
    [[1, 1, 1], [1, 1, 1]]
    """

    def __init__(self) -> None:
        self._array: np.ndarray | None = None
        self._layout: Layout | None = None

    def scratch(
        self, name: str, shape: tuple[int, ...], chunks: tuple[int, ...], dtype: Any
    ) -> np.ndarray:
        """A numpy array of zeros (`name` and `chunks` do not matter in memory)."""
        return np.zeros(shape, dtype)

    def write(self, tiles: Tiles, layout: Layout, tile: tuple[int, int], compression: str) -> None:
        """Place every tile into one array of ``layout.shape``."""
        planes = int(np.prod(layout.plane_shape, dtype=np.int64))
        tail = (layout.channels,) if layout.channels > 1 else ()
        array = np.zeros((planes, layout.height, layout.width, *tail), layout.dtype)
        for plane, rows, cols, data in tiles:
            array[plane, rows, cols] = data
        self._array, self._layout = array, layout

    def result(self) -> np.ndarray:
        """The written array, shaped ``(*planes, H, W[, C])``."""
        if self._array is None or self._layout is None:
            raise RuntimeError("nothing was written to this sink")
        return self._array.reshape(self._layout.shape)


class FileSink:
    """A TIFF (or an OME-Zarr for ``*.zarr``) written under a temporary name, then published.

    Use it as a context manager: the file appears complete when the block
    succeeds, and nothing of it (nor of its scratch arrays) stays behind
    when it fails or is interrupted.

    Parameters
    ----------
    path : Path
        The final name; checked by :func:`biounet.io.atomic.atomic_output`.
    overwrite : bool
        Replace an existing `path`.
    inputs : iterable of path
        Files `path` must not be.
    """

    def __init__(self, path: Path, *, overwrite: bool = False, inputs: Iterable[Path] = ()) -> None:
        self.path, self.overwrite, self.inputs = Path(path), overwrite, list(inputs)
        self._stack = contextlib.ExitStack()
        self._tmp: Path | None = None
        self._scratch: Path | None = None

    def __enter__(self) -> FileSink:
        self._tmp = self._stack.enter_context(
            atomic_output(self.path, overwrite=self.overwrite, inputs=self.inputs)
        )
        return self

    def __exit__(self, *exc: Any) -> bool | None:
        self._scratch = self._tmp = None
        return self._stack.__exit__(*exc)

    def _temporary(self) -> Path:
        if self._tmp is None:
            raise RuntimeError("enter the FileSink (with ...) before writing")
        return self._tmp

    def scratch(
        self, name: str, shape: tuple[int, ...], chunks: tuple[int, ...], dtype: Any
    ) -> Any:
        """A zarr array in a scratch folder beside the output, removed at the end."""
        import zarr

        if self._scratch is None:
            self._scratch = self._stack.enter_context(scratch_folder(self._temporary()))
        store = str(self._scratch / f"{name}.zarr")
        return zarr.open_array(store, mode="w", shape=shape, chunks=chunks, dtype=dtype)

    def write(self, tiles: Tiles, layout: Layout, tile: tuple[int, int], compression: str) -> None:
        """Write the tiles to the temporary file (published on leaving the block)."""
        write_tiles(self._temporary(), tiles, layout, tile, compression)
