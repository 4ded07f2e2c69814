"""``biounet export-bioimageio``: a model as a bioimage.io model package."""

from __future__ import annotations

from pathlib import Path

import click

from biounet.cli.parse import Command


@click.command("export-bioimageio", cls=Command, files=("model_path", "sample"))
@click.option(
    "--model",
    "model_path",
    type=click.Path(path_type=Path),
    help="Checkpoint (.pt). Default: the bundled ISBI 2012 model.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Package to write: a .zip, or a folder.",
)
@click.option(
    "--sample",
    type=click.Path(path_type=Path),
    help="2-D image whose centre becomes the test input. Default: the synthetic EM sample.",
)
@click.option(
    "--pixel-size",
    help="Pixel size of the training data, for the package's axes: micrometres (0.5) or with "
    "a unit (4nm) [default: 4nm for the bundled model (ISBI 2012); else the --sample TIFF's; "
    "else none].",
)
@click.option("--name", default="biounet U-Net", show_default=True, help="Model name.")
@click.option(
    "--author",
    "authors",
    multiple=True,
    help="An author (repeat for several) [biounet contributors].",
)
@click.option(
    "--license", "license_id", default="BSD-3-Clause", show_default=True, help="SPDX licence id."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
def command(
    model_path: Path | None,
    output: Path,
    sample: Path | None,
    pixel_size: str | None,
    name: str,
    authors: tuple[str, ...],
    license_id: str,
    overwrite: bool,
) -> None:
    """Write a bioimage.io model package (spec 0.5) of a model.

    The package holds state-dict weights (architecture from biounet) and
    TorchScript weights, a test input and output, the input size rule
    (min 188, step 16 for the paper's net), the output offset (-184), the
    checkpoint's normalisation as preprocessing, a README, a cover, the
    licence and the paper as citation. Check it with `bioimageio test OUTPUT`.
    Needs the bioimageio extra: pip install -e '.[bioimageio]' in biounet's clone.

    \b
    Example:
      biounet export-bioimageio -o isbi2012.zip
      biounet predict image.tif -o labels.tif --model isbi2012.zip
    """
    from biounet.network.bioimageio import export_bioimageio, package_pixel_size, sample_image
    from biounet.network.unet import load_model

    pixel = package_pixel_size(pixel_size, sample, model_path)
    model = load_model(model_path)
    path = export_bioimageio(
        model,
        output,
        sample=sample_image(sample),
        name=name,
        authors=authors or ("biounet contributors",),
        license=license_id,
        pixel_size=pixel,
        overwrite=overwrite,
        inputs=(model_path, sample),
    )
    click.echo(f"wrote {path} (check it with: bioimageio test {path})")
