"""Reading and writing images: one reader (``read``), one writer (``write``), atomic outputs.

``read`` opens TIFF, OME-TIFF, ImageJ stacks and PNG lazily, plane and region at a
time; ``write`` writes tiled OME-TIFF and OME-Zarr tile by tile; ``atomic``
puts every output under a temporary name and renames it when complete.
"""
