"""napari-ome-zarr, napari's OME-Zarr reader plugin, opens what `biounet predict` writes.

Labels come in as a multiscale Labels layer, probabilities as a multiscale
Image layer, both with the pyramid's levels and the pixel size (4 nm, written
as 0.004 micrometer) as their scale and units.

Needs napari, napari-ome-zarr, a Qt binding, pytest-qt and an X display
(``pip install -e ".[dev-napari]"``, ``apt-get install xvfb``); skipped
without them unless BIOUNET_REQUIRE_NAPARI=1 (set by CI).
"""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

REQUIRED = os.environ.get("BIOUNET_REQUIRE_NAPARI") == "1"
if not REQUIRED:
    pytest.importorskip("napari_ome_zarr", reason="needs napari-ome-zarr (the dev-napari extra)")
    pytest.importorskip("napari", reason="needs napari (the dev-napari extra)")
    pytest.importorskip("pytestqt", reason="needs pytest-qt (the dev-napari extra)")
    pytest.importorskip("qtpy", reason="needs a Qt binding (the dev-napari extra)")

import napari.layers  # noqa: E402
from zarr_levels import zarr_level  # noqa: E402

from biounet.cli import main  # noqa: E402
from biounet.network.checkpoint import save_checkpoint  # noqa: E402
from biounet.network.unet import UNet, UNetConfig  # noqa: E402

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

EM = Path(__file__).resolve().parents[2] / "sample_data" / "em_synthetic.tif"  # 512x512, 4 nm

#: A 172 px window of the depth-2 network gives 128 px chunks: 512 -> 256 -> 128, three levels.
SHAPES = [(512, 512), (256, 256), (128, 128)]


@pytest.fixture(scope="module")
def predictions(tmp_path_factory):
    """Labels and probabilities of the EM sample as OME-Zarr, by `biounet predict`."""
    tmp = tmp_path_factory.mktemp("napari_ome_zarr")
    torch.manual_seed(5)
    model = save_checkpoint(tmp / "tiny.pt", UNet(UNetConfig(features=4, depth=2)).eval())
    # one folder down: napari-ome-zarr 0.10 opens the folder above a root label image's
    # folder as a Zarr group for writing (it looks for a parent image), so keep that in tmp
    out = tmp / "out"
    out.mkdir()
    paths = {}
    for kind in ("labels", "probabilities"):
        paths[kind] = out / f"{kind}.zarr"
        args = [EM, "-o", paths[kind], "--kind", kind, "--model", model, "--window", 172]
        r = CliRunner().invoke(main, ["-q", "predict", "--device", "cpu", *map(str, args)])
        assert r.exit_code == 0, r.output
    return paths


def _open(viewer, path):
    layers = viewer.open(str(path), plugin="napari-ome-zarr")
    assert len(layers) == 1
    return layers[0]


def _check_pyramid(layer, path):
    assert layer.multiscale is True
    assert [tuple(level.shape) for level in layer.data] == SHAPES
    assert tuple(layer.scale) == (0.004, 0.004)
    assert tuple(str(u) for u in layer.units) == ("micrometer", "micrometer")
    for k, level in enumerate(layer.data):
        assert np.array_equal(np.asarray(level), zarr_level(path, k)[:])


def test_labels_open_as_a_multiscale_labels_layer(make_napari_viewer, predictions):
    layer = _open(make_napari_viewer(), predictions["labels"])
    assert type(layer) is napari.layers.Labels  # from the NGFF image-label metadata
    _check_pyramid(layer, predictions["labels"])
    assert layer.data[0].dtype == np.uint16 and int(np.asarray(layer.data[0]).max()) > 1


def test_probabilities_open_as_a_multiscale_image_layer(make_napari_viewer, predictions):
    layer = _open(make_napari_viewer(), predictions["probabilities"])
    assert type(layer) is napari.layers.Image
    _check_pyramid(layer, predictions["probabilities"])
    assert layer.data[0].dtype == np.float32
