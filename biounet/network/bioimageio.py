"""Export a model as a bioimage.io model package (spec 0.5), built with bioimageio.spec.

The package holds the weights twice, as a PyTorch state dict whose
architecture is :func:`biounet.network.unet.unet_from_config` (importable
from biounet) and as TorchScript; a test input (a crop of a sample image)
with the output the model gives for it; the input size rule of the
valid-convolution network (``min + n * step``: 188 + 16 n for depth 4) and
the output size as the input size plus an offset (-184: the network crops
its own halo); the checkpoint's grey-value normalisation as preprocessing
(``scale_linear``) and the softmax over the classes as postprocessing; a
README with a validation section, a cover image, the licence and the paper
as citation. The space axes state the pixel size of the data the model was
trained on (``unit: nanometer``, ``scale``) where it is known. ``config.biounet``
repeats the architecture and normalisation so that
:func:`biounet.network.unet.load_model` reads the package without
bioimageio.spec.

Needs the ``bioimageio`` extra (``pip install -e ".[bioimageio]"`` in biounet's clone).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from biounet import __version__
from biounet.errors import BiounetError
from biounet.io.atomic import atomic_output, check_writable, scratch_folder, write_failure
from biounet.io.boundary import check_outputs
from biounet.io.units import NGFF_UNITS, PixelSize, parse_pixel_size, tiff_pixel_size
from biounet.network import shapes
from biounet.network.checkpoint import cpu_state
from biounet.network.normalize import Normalization, normalize
from biounet.network.unet import UNet

#: The paper every package cites.
PAPER = (
    "O. Ronneberger, P. Fischer, T. Brox. U-Net: Convolutional Networks for Biomedical "
    "Image Segmentation. MICCAI 2015, LNCS 9351, 234-241."
)
PAPER_DOI = "10.1007/978-3-319-24574-4_28"


class _Scriptable(nn.Module):
    """The same layers as a :class:`UNet`, with a forward that TorchScript compiles.

    Used only to write the TorchScript weights; the expansive levels are
    stored top-down order reversed (bottom first), so their keys differ
    from the state dict's.
    """

    def __init__(self, net: UNet) -> None:
        super().__init__()
        self.down, self.pool, self.bottom, self.head = net.down, net.pool, net.bottom, net.head
        levels = list(reversed(range(net.config.depth)))
        self.expand = nn.ModuleList(nn.ModuleList([net.up[k], net.dec[k]]) for k in levels)
        self.upconv_relu = net.config.upconv_relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips: list[torch.Tensor] = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        level = len(skips) - 1
        for stage in self.expand:
            x = stage[0](x)
            if self.upconv_relu:
                x = torch.relu(x)
            skip = skips[level]
            dy = (skip.shape[-2] - x.shape[-2]) // 2
            dx = (skip.shape[-1] - x.shape[-1]) // 2
            skip = skip[:, :, dy : dy + x.shape[-2], dx : dx + x.shape[-1]]
            x = stage[1](torch.cat([x, skip], dim=1))
            level -= 1
        return self.head(x)


def test_input_size(model: UNet, near: int = 316) -> int:
    """A valid input size near `near` for the package's test tensor.

    Examples
    --------
    >>> from biounet.network.unet import UNetConfig
    >>> test_input_size(UNet(UNetConfig(features=4)))
    316
    """
    cfg = model.config
    sizes = shapes.valid_input_sizes(
        near + shapes.size_step(cfg.depth), depth=cfg.depth, padding=cfg.padding
    )
    return max(s for s in sizes if s <= max(near, sizes[0]))


def sample_image(path: str | Path | None = None) -> np.ndarray:
    """A 2-D image for the test tensor: `path`'s first plane, or the synthetic EM sample."""
    from biounet.io.read import read_array
    from biounet.synthetic import em_like

    if path is None:
        return em_like((400, 400), rng=np.random.default_rng(0))[0]
    image = read_array(path, ndim=(2, 3))
    return image if image.ndim == 2 else image[0]


def package_pixel_size(
    stated: str | None = None,
    sample: str | Path | None = None,
    model: str | Path | None = None,
) -> PixelSize | None:
    """The pixel size a package states for its model's data, where known.

    Parameters
    ----------
    stated : str, optional
        ``--pixel-size`` as typed (``"4nm"``, ``"0.5"`` in µm): wins.
    sample : path, optional
        ``--sample``: a TIFF that states its pixel size (OME, ImageJ, resolution
        tags), taken for a model whose training data is not known.
    model : path, optional
        ``--model``; None for the bundled model, trained on ISBI 2012 (4 nm pixels,
        :data:`biounet.network.bundled.TRAINING_PIXEL_SIZE`).

    Returns
    -------
    PixelSize or None
        None when nothing states it (a checkpoint of unknown data and no sample
        size): the package's axes then carry no unit.
    """
    if stated is not None:
        return parse_pixel_size(stated)
    if model is None:
        from biounet.network.bundled import TRAINING_PIXEL_SIZE

        return TRAINING_PIXEL_SIZE
    if sample is not None:
        if Path(sample).suffix.lower() in (".tif", ".tiff"):
            import tifffile

            try:
                with tifffile.TiffFile(sample) as tif:
                    found = tiff_pixel_size(tif)
            except Exception:  # unreadable: sample_image names the problem
                return None
            return found if found.known else None
    return None


def _space_units(pixel_size: PixelSize | None) -> tuple[dict, dict]:
    """``unit`` and ``scale`` of the y and x axes of a package (empty without a size)."""
    if pixel_size is None or not pixel_size.known or pixel_size.unit not in NGFF_UNITS:
        return {}, {}
    unit = NGFF_UNITS[pixel_size.unit]
    return {"unit": unit, "scale": pixel_size.y}, {"unit": unit, "scale": pixel_size.x}


def _cover(image: np.ndarray, prob: np.ndarray, norm: Normalization, path: Path) -> None:
    """A 2:1 PNG: the test input's centre beside its foreground probability."""
    from PIL import Image

    side = prob.shape[-1]
    crop = (image.shape[-1] - side) // 2
    left = normalize(image[crop : crop + side, crop : crop + side], norm)
    both = np.concatenate([left, prob], axis=1)
    Image.fromarray((np.clip(both, 0, 1) * 255).astype(np.uint8)).save(path)


def _readme(model: UNet, size: int, out: int, dtype: str, pixel: PixelSize | None) -> str:
    cfg = model.config
    rule = model.decision
    objects = {
        "components": "4-connected components of the foreground",
        "watershed": f"a watershed from seeds where probability > {rule.seed_threshold:g}",
        "distance": "the foreground split at the necks of its shape (a watershed of the "
        f"distance to the background from its maxima at least {rule.split_depth:g} px deep "
        f"and {rule.split_radius:g} px from the background)",
    }[rule.method]
    min_size = f", at least {rule.min_size} px" if rule.min_size else ""
    chosen = f"calibrated for {rule.chosen_by}" if rule.chosen_by else "not calibrated"
    scale = (
        f"Pixel size of the training data: {pixel.describe()} (the axes' `unit` and `scale`)."
        if pixel is not None and pixel.known
        else "The pixel size of the training data is not recorded."
    )
    smallest = shapes.smallest_valid_input_size(depth=cfg.depth, padding=cfg.padding)
    return f"""# biounet U-Net

The U-Net of Ronneberger, Fischer and Brox (MICCAI 2015) as implemented by
biounet {__version__} (installed from its source: `pip install -e .` in a clone):
{cfg.padding} convolutions,
depth {cfg.depth}, {cfg.features} features in the first level, {cfg.in_channels} input
channel(s), {cfg.n_classes} classes ({cfg.flavour} flavour).

## Inputs and outputs

- input `raw`: float32 holding the grey values as stored (`{dtype}`), axes batch,
  channel, y, x; y and x of size {smallest} + n * {shapes.size_step(cfg.depth)}.
  Preprocessing: `scale_linear` (the grey-value scaling the model was trained with).
  {scale}
- output `probabilities`: class probabilities (softmax over the channel axis);
  y and x are the input's size {-2 * cfg.halo:+d} (the network crops {cfg.halo} px of context
  per side; for the test tensor {size} -> {out}).

## Decision rule

The output is class probabilities. The model's decision rule, which
`biounet predict --model THIS_PACKAGE.zip` applies by default (and which is
stored in `config.biounet.decision` of this package's description): foreground
is `probability > {rule.threshold:g}`, objects are {objects}{min_size}
({chosen}). A consumer of the probabilities should threshold them at
{rule.threshold:g}, not 0.5.

## Tiled prediction

The network needs {cfg.halo} px of context per side. biounet predicts large images
with overlap-tile prediction on the max-pooling grid, which equals whole-image
prediction; run `biounet predict IMAGE -o OUT --model THIS_PACKAGE.zip`.

## Validation

The test tensors were produced by biounet from a crop of its synthetic EM sample;
`bioimageio test` reproduces them (relative and absolute tolerance 1e-3) with the
state-dict and the TorchScript weights. For biounet's own tests of the
architecture (23 convolutional layers, the 572 -> 388 sizes, the size rule) see
its documentation.

## Citation

{PAPER} doi:{PAPER_DOI}
"""


def check_description(name: str, authors: Iterable[str], license: str, bio: Any) -> None:
    """Refuse, before any work, a name, author or licence id that bioimage.io would refuse.

    Raises
    ------
    BiounetError
        Naming the option (``--name``, ``--author``, ``--license``).
    """
    if not isinstance(name, str) or not name.strip() or "\n" in name or len(name) > 128:
        raise BiounetError(f"--name {name!r}: give a name of 1 to 128 characters on one line")
    for author in authors:
        if not str(author).strip() or "\n" in str(author):
            raise BiounetError(f"--author {author!r}: an author needs a name on one line")
    try:
        bio.LicenseId(license)
    except Exception:  # pydantic's ValidationError: not a known SPDX id
        raise BiounetError(
            f"--license {license}: not an SPDX licence id that bioimage.io accepts "
            "(e.g. BSD-3-Clause, MIT, CC-BY-4.0; https://spdx.org/licenses)"
        ) from None


def _validated(output: Path, make: Any, **fields: Any) -> Any:
    """`make(**fields)`, with a validation error as one line naming `output`."""
    try:
        return make(**fields)
    except Exception as exc:  # pydantic's ValidationError
        errors = getattr(exc, "errors", None)
        if not callable(errors):
            raise
        first = errors()[0] if errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())) or "description"
        raise BiounetError(
            f"{output}: bioimage.io refuses the description ({where}: "
            f"{first.get('msg', type(exc).__name__)})"
        ) from None


def export_bioimageio(
    model: UNet,
    output: str | Path,
    *,
    sample: np.ndarray,
    name: str = "biounet U-Net",
    description: str = "The U-Net of Ronneberger et al. (2015) for microscopy segmentation.",
    authors: tuple[str, ...] = ("biounet contributors",),
    license: str = "BSD-3-Clause",
    pixel_size: PixelSize | None = None,
    overwrite: bool = False,
    inputs: Iterable[str | Path | None] = (),
) -> Path:
    """Write `model` as a bioimage.io model package (a ``.zip`` or a folder).

    Parameters
    ----------
    model : UNet
    output : str or Path
        ``*.zip`` for a zipped package, anything else for a folder.
    sample : ndarray of shape (Y, X), integer or float
        An image of the kind the model segments; its centre becomes the test
        input (cropped to a valid size, at least the smallest valid size).
    name, description : str
    authors : tuple of str
    license : str
        SPDX identifier of the weights' licence.
    pixel_size : PixelSize, optional
        The pixel size of the data the model was trained on: the ``unit`` and
        ``scale`` of the input and output space axes (:func:`package_pixel_size`).
        None: the axes carry no unit.
    overwrite : bool
        Replace an existing output.
    inputs : iterable of path
        The files the model and the sample came from: `output` must not be,
        hold or lie inside any of them, ``overwrite`` or not.

    Returns
    -------
    Path
        `output`.

    Raises
    ------
    BiounetError
        bioimageio.spec missing, a sample that is too small or has channels
        the model does not take, an existing output without `overwrite`, an
        output that overlaps an input, an empty name or author, a licence id
        bioimage.io does not know, or a description the validator refuses.
    """
    try:
        from bioimageio.spec import save_bioimageio_package, save_bioimageio_package_as_folder
        from bioimageio.spec.model import v0_5 as bio
    except ImportError:
        raise BiounetError(
            "export-bioimageio needs bioimageio.spec: pip install -e '.[bioimageio]' in "
            "biounet's clone"
        ) from None
    output = Path(output)
    sources = [Path(p) for p in inputs if p is not None]
    check_outputs([output], sources, inside=True)  # nor inside the package it exports
    check_writable(output, overwrite=overwrite, inputs=sources)
    check_description(name, authors, license, bio)
    cfg = model.config
    if cfg.in_channels != 1:
        raise BiounetError("export-bioimageio: only single-channel models are supported")
    sample = np.asarray(sample)
    size = test_input_size(model)
    if sample.ndim != 2 or min(sample.shape) < size:
        raise BiounetError(
            f"sample: need a 2-D image of at least {size}x{size}, got {sample.shape}"
        )
    y0, x0 = (sample.shape[0] - size) // 2, (sample.shape[1] - size) // 2
    image = np.ascontiguousarray(sample[y0 : y0 + size, x0 : x0 + size])
    dtype = str(image.dtype)
    low, high = model.normalization.bounds(image.dtype)
    model = copy.deepcopy(model).float().eval()  # the caller's model stays as it is
    with torch.no_grad():
        x = torch.from_numpy(normalize(image, model.normalization))[None, None]
        prob = torch.softmax(model(x), dim=1).numpy().astype(np.float32)
    out_size = prob.shape[-1]
    step = shapes.size_step(cfg.depth)
    minimum = shapes.smallest_valid_input_size(depth=cfg.depth, padding=cfg.padding)
    offset = -2 * cfg.halo

    # the files of the package are made beside the output, never in $TMPDIR; a
    # killed export leaves a scratch folder there that the next run removes
    with scratch_folder(output) as tmp:
        # the model description's input is float32 holding the stored grey values
        # (bioimage.io casts processed inputs to the declared type)
        np.save(tmp / "test_input.npy", image[None, None].astype(np.float32))
        np.save(tmp / "test_output.npy", prob)
        try:
            torch.save(cpu_state(model), tmp / "weights.pt")
        except RuntimeError as exc:
            raise write_failure(exc, output) from None
        with warnings.catch_warnings():
            # torch 2.13 deprecates TorchScript; bioimage.io's torchscript format still needs it
            warnings.filterwarnings("ignore", ".*torch.jit", DeprecationWarning)
            scripted = torch.jit.script(_Scriptable(model).eval())
            with torch.no_grad():
                same = torch.equal(scripted(x), model(x))
            try:
                scripted.save(str(tmp / "weights_torchscript.pt"))
            except RuntimeError as exc:
                raise write_failure(exc, output) from None
        if not same:
            raise BiounetError("export-bioimageio: the TorchScript network differs from the model")
        _cover(image, prob[0, 1], model.normalization, tmp / "cover.png")
        (tmp / "README.md").write_text(_readme(model, size, out_size, dtype, pixel_size))
        raw, prob_id = bio.TensorId("raw"), bio.TensorId("probabilities")
        y, x = bio.AxisId("y"), bio.AxisId("x")
        rule = bio.ParameterizedSize(min=minimum, step=step)
        y_unit, x_unit = _space_units(pixel_size)
        inputs = [
            bio.InputTensorDescr(
                id=raw,
                description=f"grey values as stored ({dtype}), as float32",
                axes=[
                    bio.BatchAxis(),
                    bio.ChannelAxis(channel_names=[bio.Identifier("grey")]),
                    bio.SpaceInputAxis(id=y, size=rule, **y_unit),
                    bio.SpaceInputAxis(id=x, size=rule, **x_unit),
                ],
                test_tensor=bio.FileDescr(source=tmp / "test_input.npy"),
                data=bio.IntervalOrRatioDataDescr(type="float32"),
                preprocessing=[
                    bio.EnsureDtypeDescr(kwargs=bio.EnsureDtypeKwargs(dtype="float32")),
                    bio.ScaleLinearDescr(
                        kwargs=bio.ScaleLinearKwargs(
                            gain=1.0 / (high - low), offset=-low / (high - low)
                        )
                    ),
                ],
            )
        ]
        names = ["background", "foreground"] if cfg.n_classes == 2 else None
        names = names or [f"class{k}" for k in range(cfg.n_classes)]
        outputs = [
            bio.OutputTensorDescr(
                id=prob_id,
                description="class probabilities",
                axes=[
                    bio.BatchAxis(),
                    bio.ChannelAxis(channel_names=[bio.Identifier(n) for n in names]),
                    bio.SpaceOutputAxis(
                        id=y,
                        size=bio.SizeReference(tensor_id=raw, axis_id=y, offset=offset),
                        **y_unit,
                    ),
                    bio.SpaceOutputAxis(
                        id=x,
                        size=bio.SizeReference(tensor_id=raw, axis_id=x, offset=offset),
                        **x_unit,
                    ),
                ],
                test_tensor=bio.FileDescr(source=tmp / "test_output.npy"),
                data=bio.IntervalOrRatioDataDescr(type="float32"),
                postprocessing=[
                    bio.SoftmaxDescr(kwargs=bio.SoftmaxKwargs(axis=bio.AxisId("channel")))
                ],
            )
        ]
        torch_version = bio.Version(torch.__version__.split("+")[0])
        weights = bio.WeightsDescr(
            pytorch_state_dict=bio.PytorchStateDictWeightsDescr(
                source=tmp / "weights.pt",
                architecture=bio.ArchitectureFromLibraryDescr(
                    import_from="biounet.network.unet",
                    callable=bio.Identifier("unet_from_config"),
                    kwargs=asdict(cfg),
                ),
                pytorch_version=torch_version,
            ),
            torchscript=bio.TorchscriptWeightsDescr(
                source=tmp / "weights_torchscript.pt",
                parent="pytorch_state_dict",
                pytorch_version=torch_version,
            ),
        )
        descr = _validated(
            output,
            bio.ModelDescr,
            name=name,
            description=description,
            authors=[bio.Author(name=a) for a in authors],
            cite=[bio.CiteEntry(text=PAPER, doi=bio.Doi(PAPER_DOI))],
            license=bio.LicenseId(license),
            documentation=bio.FileDescr(source=tmp / "README.md"),
            covers=[bio.FileDescr(source=tmp / "cover.png")],
            tags=["unet", "segmentation", "microscopy", "2d", "pytorch", "biounet"],
            inputs=inputs,
            outputs=outputs,
            weights=weights,
            config={
                "biounet": {
                    "biounet_version": __version__,
                    "model_config": asdict(cfg),
                    "normalization": asdict(model.normalization),
                    "decision": asdict(model.decision),
                }
            },
        )
        with atomic_output(output, overwrite=overwrite, inputs=sources) as dest:
            if output.suffix.lower() == ".zip":
                save_bioimageio_package(descr, output_path=dest)
            else:
                save_bioimageio_package_as_folder(descr, output_path=dest)
    return output
