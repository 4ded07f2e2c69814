"""What ``biounet weight-map`` and ``biounet augment`` do: check training data before a run.

:func:`write_weight_maps` computes the targets and weight maps of a label
image or stack, writes the maps as a float32 TIFF and, optionally, a figure
like the paper's Fig. 3. :func:`write_augment_grid` draws augmented training
tiles exactly as training will and shows them with their targets and
weights, so that the settings can be checked before a long run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from biounet.errors import BiounetError
from biounet.io.atomic import atomic_output, check_writable, same_or_inside
from biounet.network.normalize import Normalization, normalize
from biounet.training.augment import AugmentConfig, random_tile
from biounet.training.data import Foreground, LabelKind, load_labels, load_pairs
from biounet.training.weight_map import WeightMapConfig, weight_maps

__all__ = ["write_weight_maps", "write_augment_grid"]

log = logging.getLogger(__name__)


def _check_figure_path(path: Path, overwrite: bool, dpi: int, inputs: list[Path]) -> Path:
    if path.suffix.lower() != ".png":
        raise BiounetError(f"{path}: the figure must be a .png file")
    if not 20 <= dpi <= 600:
        raise BiounetError(f"--dpi {dpi}: choose between 20 and 600")
    return check_writable(path, overwrite=overwrite, inputs=inputs)


def check_crop(crop: tuple[slice, slice], shape: tuple[int, ...], name: str | Path) -> None:
    """Refuse a figure region that holds no pixel of an image of `shape` (M, N).

    Examples
    --------
    >>> check_crop((slice(0, 4), slice(2, 3)), (8, 8), "a.tif")
    >>> check_crop((slice(5, 5), slice(0, 4)), (8, 8), "a.tif")
    Traceback (most recent call last):
    ...
    biounet.errors.BiounetError: --crop 5:5,0:4: selects no pixel of a.tif (8x8)
    """
    rows, cols = (range(*c.indices(n)) for c, n in zip(crop, shape[-2:], strict=True))
    if len(rows) == 0 or len(cols) == 0:
        text = ",".join(f"{c.start}:{c.stop}" for c in crop)
        raise BiounetError(f"--crop {text}: selects no pixel of {name} ({shape[-2]}x{shape[-1]})")


def write_weight_maps(
    labels: str | Path,
    output: str | Path,
    *,
    config: WeightMapConfig,
    label_kind: LabelKind = "auto",
    foreground: Foreground = "high",
    image: str | Path | None = None,
    figure: str | Path | None = None,
    plane: int = 0,
    crop: tuple[slice, slice] | None = None,
    dpi: int = 80,
    overwrite: bool = False,
) -> str:
    """Weight maps of a label image or stack as a float32 TIFF, plus an optional figure.

    Parameters
    ----------
    labels : path
        A label image or a stack of label planes (TIFF or PNG).
    output : path
        TIFF to write: one float32 plane per label plane, shape (M, N) or
        (Z, M, N). The class weights are balanced over all planes.
    config : WeightMapConfig
    label_kind, foreground : str
        As :func:`biounet.training.data.load_pairs`.
    image : path, optional
        The matching image or stack, shown in the figure.
    figure : path, optional
        PNG to write for plane `plane` (cf. the paper's Fig. 3).
    plane : int
        Which plane the figure shows.
    crop : tuple of slice, optional
        Region the figure shows.
    dpi : int
        Resolution of the figure.
    overwrite : bool
        Replace existing output files.

    Returns
    -------
    str
        A one-line summary.
    """
    output = Path(output)
    inputs = [Path(p) for p in (labels, image) if p is not None]
    if output.suffix.lower() not in (".tif", ".tiff"):
        raise BiounetError(f"{output}: the weight map is written as TIFF (.tif)")
    check_writable(output, overwrite=overwrite, inputs=inputs)
    if figure is not None:
        figure = _check_figure_path(Path(figure), overwrite, dpi, inputs)
        if same_or_inside(figure, output):
            raise BiounetError(f"{figure}: is also the weight-map output; choose another name")
    if image is not None:
        samples = load_pairs(image, labels, label_kind=label_kind, foreground=foreground)
        names = [s.name for s in samples]
        instances = [s.instances for s in samples]
    else:
        named = load_labels(labels, label_kind=label_kind, foreground=foreground)
        names = [name for name, _ in named]
        instances = [inst for _, inst in named]
    if len({inst.shape for inst in instances}) > 1:
        raise BiounetError(f"{labels}: label images differ in size; give them one at a time")
    if not 0 <= plane < len(instances):
        raise BiounetError(f"--plane {plane}: {labels} has {len(instances)} plane(s)")
    if crop is not None:
        check_crop(crop, instances[plane].shape, labels)
    targets = weight_maps(instances, config)
    stack = np.stack([t.weights for t in targets])
    import tifffile

    with atomic_output(output, overwrite=overwrite, inputs=inputs) as tmp:
        tifffile.imwrite(tmp, stack[0] if len(targets) == 1 else stack, photometric="minisblack")
    if figure is not None:
        from biounet.viz.figures import weight_map_figure

        chosen = targets[plane]
        weight_map_figure(
            figure,
            instances[plane],
            chosen.classes,
            chosen.weights,
            image=samples[plane].image if image is not None else None,
            crop=crop,
            dpi=dpi,
            overwrite=overwrite,
            inputs=inputs,
            title=f"{names[plane]}: w0 = {config.w0:g}, sigma = {config.sigma:g} px, "
            f"w_c = ({chosen.class_weights[0]:.3f}, {chosen.class_weights[1]:.3f})",
        )
    cw = targets[0].class_weights
    return (
        f"{output}: {len(targets)} weight map(s), class weights background {cw[0]:.3f}, "
        f"objects {cw[1]:.3f}, max weight {float(stack.max()):.2f}"
    )


def write_augment_grid(
    images: str | Path,
    labels: str | Path | None,
    figure: str | Path,
    *,
    input_size: int,
    output_size: int,
    augment: AugmentConfig,
    weights: WeightMapConfig,
    n: int = 8,
    seed: int = 0,
    label_kind: LabelKind = "auto",
    foreground: Foreground = "high",
    normalization: Normalization | None = None,
    dpi: int = 60,
    overwrite: bool = False,
) -> str:
    """Draw `n` augmented training tiles as training would and write them as a grid.

    Each tile comes from a training image chosen at random; the image is
    scaled with `normalization` (default: by its dtype, as training does by
    default), its weight map is computed over the whole set.

    Parameters
    ----------
    images, labels : path
        As :func:`biounet.training.data.load_pairs` (`labels` None: CTC layout).
    figure : path
        PNG to write.
    input_size, output_size : int
        Tile sizes of the network.
    augment : AugmentConfig
    weights : WeightMapConfig
    n : int
        Number of tiles (1-32).
    seed : int
        Seed of the random generator.
    label_kind, foreground : str
        As :func:`biounet.training.data.load_pairs`.
    normalization : Normalization, optional
    dpi : int
        Resolution of the figure.
    overwrite : bool
        Replace an existing figure.

    Returns
    -------
    str
        A one-line summary.
    """
    inputs = [Path(p) for p in (images, labels) if p is not None]
    figure = _check_figure_path(Path(figure), overwrite, dpi, inputs)
    if not 1 <= n <= 32:
        raise BiounetError(f"--n {n}: choose between 1 and 32 samples")
    samples = load_pairs(images, labels, label_kind=label_kind, foreground=foreground)
    targets = weight_maps([s.instances for s in samples], weights)
    norm = Normalization() if normalization is None else normalization
    scaled = [normalize(s.image, norm) for s in samples]
    rng = np.random.default_rng(seed)
    tiles = []
    for _ in range(n):
        k = int(rng.integers(len(samples)))
        tiles.append(
            random_tile(
                scaled[k],
                targets[k].classes,
                targets[k].weights,
                input_size=input_size,
                output_size=output_size,
                rng=rng,
                config=augment,
            )
        )
    from biounet.viz.figures import augment_figure

    parts = []
    if augment.elastic:
        parts.append(
            f"elastic {augment.elastic_grid}x{augment.elastic_grid}, "
            f"sigma {augment.elastic_sigma:g} px"
        )
    if augment.rotation:
        parts.append(f"rotation +-{augment.rotation:g} deg")
    if augment.flip:
        parts.append("flips")
    if augment.gray:
        parts.append("grey values")
    augment_figure(
        figure,
        tiles,
        dpi=dpi,
        overwrite=overwrite,
        inputs=inputs,
        title=f"{n} tiles {input_size} -> {output_size} from {len(samples)} image(s), "
        f"seed {seed}: " + (", ".join(parts) or "no augmentation"),
    )
    return f"{figure}: {n} augmented tiles of {input_size} px (output {output_size} px)"
