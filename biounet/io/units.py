"""Physical pixel sizes: read from every TIFF convention, stated on the command line, converted.

A TIFF states its pixel size in one of three places, read in this order:

1. OME-XML (``Pixels/@PhysicalSizeX``, ``Y``, ``Z`` with ``PhysicalSize?Unit``;
   the OME default unit is the micrometre);
2. ImageJ metadata (``unit``, with ``spacing`` for Z; the pixel size itself is
   in the resolution tags, in that unit);
3. the TIFF resolution tags (``XResolution``/``YResolution``, pixels per
   ``ResolutionUnit``: 2 inch, 3 centimetre, and the 4 millimetre and 5
   micrometre of tifffile's ``RESUNIT``; 1, "none", gives no physical size).

Sizes are kept in the file's unit where it names one (OME, ImageJ) and in
micrometres otherwise. A pixel size stated by the user (``biounet predict
--pixel-size 0.5`` or ``--pixel-size 4nm``) replaces X and Y and keeps the
file's Z spacing, converted into the stated unit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from biounet.errors import BiounetError


@dataclass(frozen=True)
class PixelSize:
    """Physical pixel size, carried from the input to the output files.

    Attributes
    ----------
    x, y, z : float or None
        Size per pixel along each axis, in `unit`.
    unit : str
        Length unit, an OME symbol of :data:`LENGTH_UNITS` (e.g. ``"µm"``),
        or ``""`` for numbers without a known unit.
    """

    x: float | None = None
    y: float | None = None
    z: float | None = None
    unit: str = "µm"

    @property
    def known(self) -> bool:
        """Whether X and Y are stated in a length unit."""
        return bool(self.x and self.y and self.unit in LENGTH_UNITS)

    def to(self, unit: str) -> PixelSize:
        """The same size in another length unit.

        Examples
        --------
        >>> PixelSize(4.0, 4.0, 50.0, "nm").to("µm")
        PixelSize(x=0.004, y=0.004, z=0.05, unit='µm')
        """
        if self.unit not in LENGTH_UNITS or unit not in LENGTH_UNITS:
            raise ValueError(f"cannot convert {self.unit!r} to {unit!r}")
        factor = LENGTH_UNITS[self.unit] / LENGTH_UNITS[unit]
        x, y, z = (None if v is None else _tidy(v * factor) for v in (self.x, self.y, self.z))
        return PixelSize(x, y, z, unit)

    def describe(self) -> str:
        """Short text for messages: ``"4 nm"``, ``"0.5 x 0.25 µm"``, ``"unknown"``.

        Examples
        --------
        >>> PixelSize(4.0, 4.0, None, "nm").describe(), PixelSize().describe()
        ('4 nm', 'unknown')
        """
        if not (self.x and self.y):
            return "unknown"
        unit = f" {self.unit}" if self.unit else ""
        if self.x == self.y:
            return f"{self.x:g}{unit}"
        return f"{self.x:g} x {self.y:g}{unit}"


def _tidy(value: float) -> float:
    """Round away the binary noise of a unit conversion (12 significant digits)."""
    return float(f"{value:.12g}")


#: Length units: the symbols of OME-XML -> metres per unit.
LENGTH_UNITS: dict[str, float] = {
    "pm": 1e-12,
    "Å": 1e-10,
    "nm": 1e-9,
    "µm": 1e-6,
    "mm": 1e-3,
    "cm": 1e-2,
    "in": 0.0254,
    "m": 1.0,
}
#: Other spellings of the same units (ImageJ writes "micron", "um" or an escaped µ; NGFF
#: and bioimage.io spell them out).
UNIT_ALIASES: dict[str, str] = {
    "um": "µm",
    "μm": "µm",  # Greek mu
    "micron": "µm",
    "microns": "µm",
    "micrometer": "µm",
    "micrometre": "µm",
    "\\u00B5m": "µm",
    "nanometer": "nm",
    "nanometre": "nm",
    "millimeter": "mm",
    "millimetre": "mm",
    "centimeter": "cm",
    "centimetre": "cm",
    "meter": "m",
    "metre": "m",
    "picometer": "pm",
    "A": "Å",
    "angstrom": "Å",
    "inch": "in",
}
#: NGFF (OME-Zarr) and bioimage.io names of the length units.
NGFF_UNITS: dict[str, str] = {
    "pm": "picometer",
    "Å": "angstrom",
    "nm": "nanometer",
    "µm": "micrometer",
    "mm": "millimeter",
    "cm": "centimeter",
    "in": "inch",
    "m": "meter",
}
#: TIFF ``ResolutionUnit`` (tifffile's ``RESUNIT``) -> micrometres per unit; 1 (none) is absent.
RESOLUTION_UNITS: dict[int, float] = {2: 25400.0, 3: 10000.0, 4: 1000.0, 5: 1.0}


def length_unit(text: str | None) -> str | None:
    """The OME symbol of a length unit (``"um"`` -> ``"µm"``), or None if unknown.

    Examples
    --------
    >>> length_unit("micron"), length_unit("nm"), length_unit("pixel")
    ('µm', 'nm', None)
    """
    if not text:
        return None
    text = str(text).strip()
    text = UNIT_ALIASES.get(text, UNIT_ALIASES.get(text.lower(), text))
    return text if text in LENGTH_UNITS else None


_NUMBER_AND_UNIT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([^\s0-9.].*)?$")


def parse_pixel_size(text: str, option: str = "--pixel-size") -> PixelSize:
    """A pixel size as users write it: a number in micrometres, or a number and a unit.

    Parameters
    ----------
    text : str
        ``"0.5"`` (µm), ``"4nm"``, ``"0.5 um"``, ``"0.65µm"``, ``"1e-3mm"``.
    option : str
        The option's name, for messages.

    Returns
    -------
    PixelSize
        Square pixels (x = y), no Z.

    Raises
    ------
    BiounetError
        ``<option> <text>: ...`` for anything else (no number, zero, an unknown unit).

    Examples
    --------
    >>> parse_pixel_size("0.5"), parse_pixel_size("4nm")
    (PixelSize(x=0.5, y=0.5, z=None, unit='µm'), PixelSize(x=4.0, y=4.0, z=None, unit='nm'))
    """
    match = _NUMBER_AND_UNIT.match(text)
    value = float(match.group(1)) if match else 0.0
    if not match or value <= 0 or value == float("inf"):
        raise BiounetError(
            f"{option} {text}: give a positive size, in micrometres (0.5) or with a unit "
            "(4nm, 0.5um, 1e-3mm)"
        )
    unit = length_unit(match.group(2)) if match.group(2) else "µm"
    if unit is None:
        known = ", ".join(u if u != "µm" else "µm (um)" for u in LENGTH_UNITS)
        raise BiounetError(f"{option} {text}: unknown unit {match.group(2)!r} (use one of {known})")
    return PixelSize(value, value, None, unit)


def stated_pixel_size(found: PixelSize, stated: PixelSize | None) -> PixelSize:
    """The pixel size an output gets: `stated` (X and Y) with the Z of `found`, else `found`.

    Examples
    --------
    >>> stated_pixel_size(PixelSize(1.0, 1.0, 0.05, "µm"), PixelSize(4.0, 4.0, None, "nm"))
    PixelSize(x=4.0, y=4.0, z=50.0, unit='nm')
    """
    if stated is None:
        return found
    z = None
    if found.z and found.unit in LENGTH_UNITS:
        z = PixelSize(z=found.z, unit=found.unit).to(stated.unit).z
    return PixelSize(stated.x, stated.y, z, stated.unit)


def ome_image(tif: Any) -> dict[str, Any]:
    """The first ``Image`` element of a TIFF's OME-XML, parsed by tifffile (empty if none)."""
    import tifffile

    if not (tif.is_ome and tif.ome_metadata):
        return {}
    try:
        image = tifffile.xml2dict(tif.ome_metadata).get("OME", {}).get("Image", {})
    except Exception:  # malformed XML: treat as absent, the pixels are still readable
        return {}
    if isinstance(image, list):
        image = image[0] if image else {}
    return image if isinstance(image, dict) else {}


def ome_pixel_size(tif: Any) -> PixelSize | None:
    """Pixel size from the OME-XML's ``Pixels`` element (OME's default unit is µm).

    Axes in different length units are converted into the unit of the first
    (X, then Y, then Z); a unit that is not a length keeps the numbers only
    (``unit=""``). None if the OME-XML states no size.
    """
    pixels = ome_image(tif).get("Pixels", {})
    if not isinstance(pixels, dict):
        return None
    found: dict[str, tuple[float, str | None]] = {}
    for axis in "XYZ":
        value = pixels.get(f"PhysicalSize{axis}")
        if isinstance(value, (int, float)) and value > 0:
            unit = length_unit(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
            found[axis.lower()] = (float(value), unit)
    if not found:
        return None
    units = [u for _, u in found.values()]
    if None in units:  # a non-length unit (pixel, reference frame): keep the numbers only
        return PixelSize(**{a: v for a, (v, _) in found.items()}, unit="")
    unit = units[0]
    sizes = {a: PixelSize(x=v, unit=u).to(unit).x for a, (v, u) in found.items()}
    return PixelSize(**sizes, unit=unit)


def resolution_sizes(page: Any) -> tuple[float, float] | None:
    """Size per pixel (X, Y) from a page's resolution tags, in the tags' unit; None if unset.

    TIFF writers that state nothing write 1 pixel per unit (or nothing):
    that is taken as no size.
    """
    xres, yres = page.tags.get("XResolution"), page.tags.get("YResolution")
    if xres is None or yres is None:
        return None
    sizes = []
    for tag in (xres, yres):
        num, den = tag.value
        if not num or not den:
            return None
        sizes.append(den / num)
    if sizes == [1.0, 1.0]:
        return None
    return sizes[0], sizes[1]


def tiff_pixel_size(tif: Any) -> PixelSize:
    """The pixel size a TIFF states: OME-XML, else ImageJ metadata, else the resolution tags.

    Parameters
    ----------
    tif : tifffile.TiffFile

    Returns
    -------
    PixelSize
        ``PixelSize()`` (all None) when the file states no physical size.
    """
    ome = ome_pixel_size(tif)
    if ome is not None:
        return ome
    page = tif.pages[0]
    sizes = resolution_sizes(page)
    ij = tif.imagej_metadata or {}
    unit = length_unit(ij.get("unit"))
    if unit is not None:
        z = ij.get("spacing")
        z_unit = length_unit(ij.get("zunit")) or unit
        z = PixelSize(z=float(z), unit=z_unit).to(unit).z if _positive(z) else None
        if sizes is None:
            return PixelSize(None, None, z, unit) if z else PixelSize()
        return PixelSize(_tidy(sizes[0]), _tidy(sizes[1]), z, unit)
    res_unit = page.tags.get("ResolutionUnit")
    # no ResolutionUnit tag: taken as none (the TIFF default, inch, mostly means a screen's dpi)
    microns = RESOLUTION_UNITS.get(int(res_unit.value) if res_unit else 1)
    if sizes is None or microns is None:
        return PixelSize()
    return PixelSize(_tidy(sizes[0] * microns), _tidy(sizes[1] * microns), None, "µm")


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and value > 0


def tiff_resolution(ps: PixelSize) -> tuple[tuple[float, float], int] | None:
    """TIFF resolution tags for a pixel size: (pixels per unit for X and Y, ResolutionUnit).

    Micrometre-scale and smaller sizes are written per centimetre (3), the
    unit every TIFF reader knows; None when the size has no length unit.

    Examples
    --------
    >>> tiff_resolution(PixelSize(0.5, 0.25, None, "µm"))
    ((20000.0, 40000.0), 3)
    """
    if not ps.known:
        return None
    cm = ps.to("cm")
    return (1.0 / cm.x, 1.0 / cm.y), 3
