"""Regenerate the sample images in this folder (all synthetic, made by biounet itself).

Run ``python sample_data/make_samples.py``; the generator is seeded, so the
files come out identical.
"""

from pathlib import Path

import numpy as np
import tifffile

from biounet.synthetic import em_like, touching_cells

HERE = Path(__file__).resolve().parent


def main() -> None:
    """Write every sample file of sample_data/ (see its README)."""
    image, cells = em_like((512, 512), rng=np.random.default_rng(2026))
    meta = {"axes": "YX", "unit": "um"}
    res = (1 / 0.004, 1 / 0.004)  # 4 nm pixels, like ISBI 2012
    tifffile.imwrite(
        HERE / "em_synthetic.tif",
        image,
        imagej=True,
        metadata=meta,
        resolution=res,
        compression="zlib",
    )
    tifffile.imwrite(
        HERE / "em_synthetic_labels.tif",
        np.where(cells > 0, 255, 0).astype(np.uint8),
        imagej=True,
        metadata=meta,
        resolution=res,
        compression="zlib",
    )
    stack = np.stack([em_like((256, 256), rng=np.random.default_rng(s))[0] for s in range(3)])
    tifffile.imwrite(
        HERE / "em_stack.tif",
        stack,
        imagej=True,
        metadata={"axes": "ZYX", "unit": "um"},
        resolution=res,
        compression="zlib",
    )
    big, _ = em_like((1024, 1536), cell_size=60, rng=np.random.default_rng(7))
    tifffile.imwrite(
        HERE / "em_large_tiled.ome.tif",
        big,
        ome=True,
        tile=(256, 256),
        compression="zstd",
        metadata={"axes": "YX", "PhysicalSizeX": 0.004, "PhysicalSizeY": 0.004},
    )
    rng = np.random.default_rng(3)
    cells_image, instances = touching_cells((256, 256), n_cells=14, rng=rng)
    tifffile.imwrite(HERE / "touching_cells.tif", cells_image, compression="zlib")
    tifffile.imwrite(
        HERE / "touching_cells_labels.tif", instances.astype(np.uint16), compression="zlib"
    )


if __name__ == "__main__":
    main()
