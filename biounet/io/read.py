"""Reading microscopy TIFFs region by region, with named axes.

A TIFF (plain, BigTIFF, OME-TIFF, ImageJ hyperstack; uncompressed, LZW,
zlib or zstd; stripped or tiled) is opened as an :class:`ImageSource`: the
file's array is never loaded whole. Uncompressed contiguous data is
memory-mapped (``tifffile.memmap``); anything else is read through
tifffile's zarr interface, which decodes only the strips or tiles a region
touches. Every axis has a name (tifffile's letters): ``Y`` and ``X`` are
the image plane, ``C`` or ``S`` the channels, and every other axis (``Z``,
``T``, ``Q`` ...) enumerates planes that are segmented one by one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from biounet.errors import BiounetError, OutOfMemory, working_on
from biounet.io.units import (  # noqa: F401 (LENGTH_UNITS, length_unit: read from here too)
    LENGTH_UNITS,
    PixelSize,
    length_unit,
    ome_image,
    stated_pixel_size,
    tiff_pixel_size,
)

#: Input dtypes the network accepts after normalisation.
SUPPORTED_DTYPES = (
    "bool",
    "uint8",
    "uint16",
    "uint32",
    "int8",
    "int16",
    "int32",
    "float16",
    "float32",
    "float64",
)


@dataclass
class ImageSource:
    """An image opened for region-wise reading.

    Attributes
    ----------
    path : Path or None
        The file, or None for an in-memory array.
    data : array-like
        Anything with ``shape``, ``dtype`` and numpy slicing (ndarray,
        ``numpy.memmap``, zarr array).
    axes : str
        One letter per axis of `data`, e.g. ``"ZCYX"``.
    pixel_size : PixelSize
    """

    path: Path | None
    data: Any
    axes: str
    pixel_size: PixelSize = field(default_factory=PixelSize)
    _closer: Any = None

    def __post_init__(self) -> None:
        self.axes = self.axes.upper()
        name = self.name
        if len(self.axes) != len(self.data.shape):
            raise BiounetError(
                f"{name}: axes '{self.axes}' do not match the data's {len(self.data.shape)} "
                f"dimensions (shape {tuple(self.data.shape)})"
            )
        if len(set(self.axes)) != len(self.axes):
            raise BiounetError(f"{name}: axes '{self.axes}' repeat a letter")
        if "Y" not in self.axes or "X" not in self.axes:
            raise BiounetError(f"{name}: axes '{self.axes}' need a Y and an X axis")
        if "C" in self.axes and "S" in self.axes:
            raise BiounetError(f"{name}: axes '{self.axes}' have both C and S channel axes")
        if str(np.dtype(self.data.dtype)) not in SUPPORTED_DTYPES:
            raise BiounetError(f"{name}: pixel type {self.data.dtype} is not supported")
        if 0 in tuple(self.data.shape):
            raise BiounetError(f"{name}: the image is empty (shape {tuple(self.data.shape)})")

    @property
    def name(self) -> str:
        """File name for messages."""
        return str(self.path) if self.path is not None else "<array>"

    @property
    def dtype(self) -> np.dtype:
        """Pixel type of the data."""
        return np.dtype(self.data.dtype)

    def _size(self, letter: str) -> int:
        return int(self.data.shape[self.axes.index(letter)]) if letter in self.axes else 1

    @property
    def channel_letter(self) -> str | None:
        """``C`` or ``S`` if the data has a channel axis, else None."""
        return next((a for a in "CS" if a in self.axes), None)

    @property
    def plane_axes(self) -> str:
        """Axes other than channels, Y and X, in file order (e.g. ``"TZ"``)."""
        return "".join(a for a in self.axes if a not in "CSYX")

    @property
    def plane_shape(self) -> tuple[int, ...]:
        """Sizes of the plane axes."""
        return tuple(self._size(a) for a in self.plane_axes)

    @property
    def n_planes(self) -> int:
        """Number of 2D planes (product of the plane axes; 1 for a 2D image)."""
        return int(np.prod(self.plane_shape, dtype=np.int64))

    @property
    def channels(self) -> int:
        """Number of channels (1 without a channel axis)."""
        return self._size(self.channel_letter) if self.channel_letter else 1

    @property
    def height(self) -> int:
        """Size of the Y axis."""
        return self._size("Y")

    @property
    def width(self) -> int:
        """Size of the X axis."""
        return self._size("X")

    def read(self, plane: int, rows: slice, cols: slice) -> np.ndarray:
        """Read a rectangle of one plane.

        Parameters
        ----------
        plane : int
            Plane number, ``0 <= plane < n_planes`` (C order over `plane_axes`).
        rows, cols : slice
            In-bounds row and column ranges with step 1.

        Returns
        -------
        ndarray of shape (C, h, w), the file's dtype
        """
        index = dict(zip(self.plane_axes, np.unravel_index(plane, self.plane_shape), strict=True))
        key = []
        for a in self.axes:
            if a == "Y":
                key.append(rows)
            elif a == "X":
                key.append(cols)
            elif a in "CS":
                key.append(slice(None))
            else:
                key.append(int(index[a]))
        with working_on(self.path or "<array>"):  # out of memory: name the file
            block = np.asarray(self.data[tuple(key)])
        kept = [a for a in self.axes if a in "CSYX"]
        if self.channel_letter is None:
            return block[np.newaxis] if kept == ["Y", "X"] else block.T[np.newaxis]
        order = [kept.index(a) for a in (self.channel_letter, "Y", "X")]
        return np.transpose(block, order)

    def close(self) -> None:
        """Release the file."""
        if self._closer is not None:
            self._closer()
            self._closer = None

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def from_array(array: Any, axes: str | None = None) -> ImageSource:
    """Wrap an in-memory or lazy array (numpy, memmap, zarr) as a source.

    Parameters
    ----------
    array : array-like
    axes : str, optional
        Default: ``"YX"``, ``"ZYX"``, ``"ZCYX"`` for 2, 3, 4 dimensions
        (use ``"CYX"`` explicitly for a multichannel 2D image).
    """
    if axes is None:
        axes = {2: "YX", 3: "ZYX", 4: "ZCYX"}.get(len(array.shape))
        if axes is None:
            raise BiounetError(f"<array>: give axes for a {len(array.shape)}-D array")
    return ImageSource(None, array, axes)


#: The most a TIFF codec can shrink data, generously rounded up (zlib's
#: limit is 1032:1, LZW's about 1400:1, PackBits' 128:1, a zstd RLE block's
#: about 32768:1). Unknown codecs get the largest.
MAX_COMPRESSION = {1: 1, 32773: 130, 8: 1100, 32946: 1100, 5: 1500, 50000: 40000}
_ANY_CODEC = 2**16


def _check_extent(tif: Any, path: Path) -> None:
    """Fail early on a truncated file or a header that claims more pixels than the file holds.

    Every strip or tile must lie inside the file, and a page's pixels
    (``shape x itemsize`` bytes) must fit in its stored data at the codec's
    largest compression ratio (:data:`MAX_COMPRESSION`): a damaged or
    hostile header that claims 200000 x 200000 pixels in a small strip is
    refused here, before anything is decoded or allocated.
    """
    size = os.path.getsize(path)
    for page in tif.pages:
        offsets, counts = page.dataoffsets, page.databytecounts
        if offsets and max(o + c for o, c in zip(offsets, counts, strict=True)) > size:
            raise BiounetError(f"{path}: the file is truncated (image data ends past its end)")
        key = getattr(page, "keyframe", None) or page  # a TiffFrame shares its keyframe's tags
        bits = getattr(key, "bitspersample", 0) or 8 * np.dtype(page.dtype).itemsize
        claimed = int(np.prod(page.shape, dtype=np.float64) * bits // 8)  # 1-bit: 1/8 byte
        stored = int(sum(counts)) if offsets else 0
        ratio = MAX_COMPRESSION.get(int(page.compression), _ANY_CODEC)
        if claimed > stored * ratio:
            dims = "x".join(str(n) for n in page.shape)
            raise BiounetError(
                f"{path}: the header claims {dims} pixels ({claimed:,} bytes) but the file "
                f"stores only {stored:,} bytes for them; the file is damaged"
            )
        _check_segments(key, page.databytecounts, path, bits, ratio)


def _check_segments(page: Any, counts: Any, path: Path, bits: int, ratio: int) -> None:
    """Refuse a tile (or strip) whose decoded size its stored bytes cannot hold.

    A header may claim small image dimensions but tiles of 65520 x 65520
    pixels: each tile is decoded into a buffer of its full size, gigabytes
    for a few stored bytes. `page` holds the tags (a keyframe), `counts` the
    stored bytes of each segment.
    """
    if not counts:
        return
    samples = page.samplesperpixel if page.planarconfig == 1 else 1  # 1: contiguous
    if page.is_tiled:
        depth = max(1, getattr(page, "tiledepth", 1) or 1)
        pixels, what = page.tilelength * page.tilewidth * depth, "tiles"
        dims = f"{page.tilewidth}x{page.tilelength}"
    else:
        rows = min(page.rowsperstrip or page.imagelength, page.imagelength)
        pixels, what = rows * page.imagewidth, "strips"
        dims = f"{page.imagewidth}x{rows}"
    segment = int(pixels) * samples * bits // 8
    largest = max(counts)
    if largest and segment > largest * ratio:
        raise BiounetError(
            f"{path}: the header claims {what} of {dims} pixels ({segment:,} bytes each) but "
            f"stores at most {largest:,} bytes for one; the file is damaged"
        )


def check_finite(source: ImageSource, *, band_pixels: int = 2**22) -> None:
    """Fail if a floating-point image holds NaN or infinite pixels.

    The image is read band by band (about `band_pixels` values at a time),
    so the check works on images of any size. Integer images pass at once.

    Raises
    ------
    BiounetError
        Naming the file and the first bad pixel.
    """
    if source.dtype.kind != "f":
        return
    width = source.width
    rows = max(1, band_pixels // max(1, width * source.channels))
    for plane in range(source.n_planes):
        for y in range(0, source.height, rows):
            block = source.read(plane, slice(y, min(y + rows, source.height)), slice(0, width))
            if not np.isfinite(block).all():
                _, row, col = np.argwhere(~np.isfinite(block))[0]
                where = f"plane {plane}, " if source.n_planes > 1 else ""
                raise BiounetError(
                    f"{source.name}: NaN or infinite pixel values (the first at {where}row "
                    f"{y + row}, column {col}); replace them, e.g. with 0, before using the image"
                )


def require_finite(array: np.ndarray, name: str) -> np.ndarray:
    """`array` itself, or a one-line error naming `name` if it has NaN or infinite values."""
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise BiounetError(
            f"{name}: NaN or infinite pixel values (the first at index {index}); "
            "replace them, e.g. with 0, before using the image"
        )
    return array


#: What a label file says it holds (OME-XML ``Image/Description``, written by biounet).
LABEL_DESCRIPTIONS: dict[str, str] = {"instance labels": "instance", "binary mask": "binary"}


def stated_label_kind(path: str | Path) -> str | None:
    """The label kind a file states in its metadata: ``'instance'``, ``'binary'`` or None.

    A TIFF states it in its OME-XML image description (``"instance labels"``
    or ``"binary mask"``, as ``biounet predict`` writes them); other files
    and TIFFs without that description state nothing.
    """
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff") or not path.is_file():
        return None
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            text = ome_image(tif).get("Description")
    except Exception:  # unreadable: the reader that follows names the problem
        return None
    return LABEL_DESCRIPTIONS.get(str(text).strip().lower()) if text else None


def detect_label_kind(
    labels: np.ndarray, path: str | Path | None = None, label_kind: str = "auto"
) -> str:
    """Whether a label image holds a binary mask or instance labels.

    Parameters
    ----------
    labels : ndarray of any shape
        The whole label file (all planes).
    path : path, optional
        The file, whose metadata may state the kind
        (:func:`stated_label_kind`).
    label_kind : {'auto', 'binary', 'instance'}
        A stated kind (a command-line flag) wins over everything.

    Returns
    -------
    {'binary', 'instance'}
        `label_kind` unless ``auto``; else the kind the file states; else
        ``instance`` for more than two distinct values, ``binary`` otherwise.

    Examples
    --------
    >>> detect_label_kind(np.array([[0, 255], [255, 0]])), detect_label_kind(np.array([0, 1, 2]))
    ('binary', 'instance')
    """
    if label_kind in ("binary", "instance"):
        return label_kind
    if label_kind != "auto":
        raise BiounetError(f"label kind must be one of auto, binary, instance, got {label_kind!r}")
    stated = stated_label_kind(path) if path is not None else None
    if stated is not None:
        return stated
    labels = np.asarray(labels)
    values = np.unique(labels.astype(np.uint8) if labels.dtype == np.bool_ else labels)
    return "instance" if values.size > 2 else "binary"


def existing_image_file(path: str | Path) -> Path:
    """`path` as a Path, or a one-line error if it is missing, a folder or not a regular file.

    A folder is an image only as an OME-Zarr store (``*.zarr``); a device
    (``/dev/zero``) or a FIFO would be read for ever.
    """
    path = Path(path)
    if not path.exists():
        raise BiounetError(f"{path}: no such file")
    if path.is_dir():
        if not is_zarr(path):
            raise BiounetError(f"{path}: is a folder, not an image")
        return path
    if not path.is_file():
        raise BiounetError(f"{path}: not a regular file (a device or a pipe), not an image")
    return path


def is_zarr(path: str | Path) -> bool:
    """Whether `path` names an OME-Zarr store (a folder ``*.zarr``)."""
    return Path(path).suffix.lower() == ".zarr" and Path(path).is_dir()


def open_zarr_image(path: Path, axes: str | None = None) -> ImageSource:
    """The full-resolution level of an OME-Zarr (NGFF 0.4) image, read chunk by chunk.

    The axes and the pixel size (the level's ``scale`` and the axes' unit)
    come from the ``multiscales`` metadata.

    Raises
    ------
    BiounetError
        A folder that is not an OME-Zarr image.
    """
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
        multiscale = group.attrs["multiscales"][0]
        level = multiscale["datasets"][0]
        data = group[level["path"]]
        described = [a if isinstance(a, dict) else {"name": a} for a in multiscale["axes"]]
        names = [a["name"].upper() for a in described]
        scale = next(
            (t["scale"] for t in level.get("coordinateTransformations", []) if "scale" in t),
            [1.0] * len(names),
        )
    except Exception as exc:  # zarr and the metadata fail in many ways
        reason = f"{type(exc).__name__}: {exc}"
        raise BiounetError(f"{path}: not an OME-Zarr image ({reason[:200]})") from None
    # only axes whose unit is a length carry a physical size
    size = {
        n: v for n, v, a in zip(names, scale, described, strict=False) if length_unit(a.get("unit"))
    }
    units = {length_unit(a.get("unit")) for a in described} - {None}
    pixel_size = PixelSize()
    if len(units) == 1 and "X" in size and "Y" in size:
        pixel_size = PixelSize(size["X"], size["Y"], size.get("Z"), units.pop())
    return ImageSource(path, data, axes or "".join(names), pixel_size)


def open_image(
    path: str | Path, *, axes: str | None = None, pixel_size: PixelSize | None = None
) -> ImageSource:
    """Open a TIFF (or an OME-Zarr image, ``*.zarr``) for region-wise reading.

    Parameters
    ----------
    path : str or Path
    axes : str, optional
        Override the axes read from the file's metadata, e.g. ``"CYX"``.
    pixel_size : PixelSize, optional
        Override the pixel size the file states (X and Y; the file's Z
        spacing is kept, see :func:`biounet.io.units.stated_pixel_size`).

    Returns
    -------
    ImageSource
        Use it as a context manager, or call ``close()``.

    Raises
    ------
    BiounetError
        Missing, unreadable, non-TIFF or truncated files, unsupported pixel
        types, and axes that do not fit the data.
    """
    import tifffile

    path = existing_image_file(path)
    if is_zarr(path):
        source = open_zarr_image(path, axes)
        source.pixel_size = stated_pixel_size(source.pixel_size, pixel_size)
        return source
    try:
        tif = tifffile.TiffFile(path)
    except tifffile.TiffFileError as exc:
        raise BiounetError(f"{path}: not a TIFF file ({exc})") from None
    except (OSError, ValueError) as exc:
        raise BiounetError(f"{path}: cannot read ({exc})") from None
    try:
        if not tif.series:
            raise BiounetError(f"{path}: holds no image data")
        series = tif.series[0]
        _check_extent(tif, path)
        data = _open_data(tifffile, tif, series, path)
        size = stated_pixel_size(tiff_pixel_size(tif), pixel_size)
        return ImageSource(path, data, axes or series.axes, size, tif.close)
    except BiounetError:
        tif.close()
        raise
    except Exception as exc:  # tifffile raises many types on damaged files
        tif.close()
        raise BiounetError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None


def _open_data(tifffile: Any, tif: Any, series: Any, path: Path) -> Any:
    """Memory-map contiguous uncompressed data; otherwise open it through zarr."""
    page = series.keyframe
    if page.is_contiguous and page.compression == 1 and not series.is_pyramidal:
        try:
            return tifffile.memmap(path, series=0, mode="r")
        except ValueError:
            pass  # not memory-mappable after all (e.g. non-native byte order)
    import zarr

    store = series.aszarr(level=0) if series.is_pyramidal else series.aszarr()
    return zarr.open(store, mode="r")


#: Suffixes :func:`read_array` reads: TIFF through tifffile, PNG through Pillow.
ARRAY_SUFFIXES = (".tif", ".tiff", ".png")


def read_array(path: str | Path, *, ndim: tuple[int, ...] | None = None) -> np.ndarray:
    """Read a whole TIFF (all pages) or PNG file into memory.

    The one in-memory reader of the package (training pairs, evaluation);
    :func:`open_image` is its lazy, region-wise counterpart for prediction.

    Parameters
    ----------
    path : str or Path
    ndim : tuple of int, optional
        Accepted numbers of dimensions, e.g. ``(2, 3)`` for an image or a stack.

    Returns
    -------
    ndarray
        As stored (dtype kept).

    Raises
    ------
    BiounetError
        ``<path>: <problem>`` for a missing file, a folder, an unreadable or
        empty image, a non-numeric pixel type or an unexpected number of
        dimensions.
    """
    path = existing_image_file(path)
    try:
        if path.suffix.lower() == ".png":
            from PIL import Image

            with Image.open(path) as img:
                array = np.asarray(img)
        else:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                _check_extent(tif, path)
                array = np.asarray(tif.asarray())
    except BiounetError:
        raise
    except MemoryError:
        raise OutOfMemory(str(path)) from None
    except Exception as exc:  # any reader failure is the file's fault
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BiounetError(f"{path}: not a readable image ({reason})") from None
    if array.dtype == bool:  # a 1-bit (bilevel) image: 0 and 1
        array = array.astype(np.uint8)
    if array.dtype == object or array.size == 0 or array.ndim < 2:
        raise BiounetError(f"{path}: not a readable image (shape {array.shape})")
    if array.dtype.kind not in "biuf":
        raise BiounetError(f"{path}: unsupported pixel type {array.dtype}")
    if ndim is not None and array.ndim not in ndim:
        names = {2: "a 2-D image", 3: "a (Z, Y, X) stack"}
        want = " or ".join(names.get(n, f"a {n}-D array") for n in ndim)
        raise BiounetError(f"{path}: expected {want}, got shape {array.shape}")
    return array
