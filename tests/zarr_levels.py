"""Reading back what biounet's OME-Zarr writer wrote (test helpers, not the package's API)."""

import json
from pathlib import Path

import zarr


def zarr_axes(path: Path) -> str:
    """Axis letters of an OME-Zarr written by ``write_ome_zarr``."""
    attrs = json.loads((Path(path) / ".zattrs").read_text())
    return "".join(a["name"].upper() for a in attrs["multiscales"][0]["axes"])


def zarr_level(path: Path, level: int = 0):
    """One resolution level (0 = full) of an OME-Zarr."""
    group = zarr.open_group(str(path), mode="r")
    datasets = group.attrs["multiscales"][0]["datasets"]
    return group[datasets[level]["path"]]
