"""The napari widgets in a headless viewer: layers equal the library's results, placed alike.

Needs napari, a Qt binding, pytest-qt and an X display for napari's OpenGL
canvas (Xvfb through pytest-xvfb): ``pip install -e ".[dev-napari]"`` and
``apt-get install xvfb``. Skipped without them, unless BIOUNET_REQUIRE_NAPARI=1
(set by CI), where a missing piece is an error.
"""

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

REQUIRED = os.environ.get("BIOUNET_REQUIRE_NAPARI") == "1"
if not REQUIRED:
    pytest.importorskip("napari", reason="the napari plugin tests need napari")
    pytest.importorskip("pytestqt", reason="the napari plugin tests need pytest-qt")
    pytest.importorskip("qtpy", reason="the napari plugin tests need a Qt binding")

import napari.layers  # noqa: E402
from npe2 import PluginManifest  # noqa: E402

from biounet.inference.segmentation import segment  # noqa: E402
from biounet.napari.segment_widget import BUNDLED, FROM_FILE, SegmentWidget  # noqa: E402
from biounet.napari.weight_map_widget import WeightMapWidget  # noqa: E402
from biounet.network.unet import load_model  # noqa: E402
from biounet.options import OutputOptions  # noqa: E402
from biounet.training.data import to_instances  # noqa: E402
from biounet.training.weight_map import WeightMapConfig, weight_maps  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"

#: Milliseconds a worker may take (CPU, tiny network).
TIMEOUT_MS = 60_000

PLACEMENT = {"scale": (0.5, 0.25), "translate": (10.0, -3.0)}


@pytest.fixture
def viewer(make_napari_viewer):
    if "DISPLAY" not in os.environ:
        reason = (
            "napari's canvas needs OpenGL from an X display: install Xvfb "
            "(apt-get install xvfb) and pytest-xvfb, or run under xvfb-run"
        )
        (pytest.fail if REQUIRED else pytest.skip)(reason)
    return make_napari_viewer()


def segment_widget(viewer, checkpoint, **controls):
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.model.value = FROM_FILE
    widget.model_file.value = checkpoint
    widget.device.value = "cpu"
    for name, value in controls.items():
        getattr(widget, name).value = value
    return widget


def click_and_wait(qtbot, widget):
    widget.run_button.native.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)


def test_manifest_is_valid_and_names_the_contributions():
    manifest = PluginManifest.from_distribution("biounet")
    manifest.validate_imports()
    contributions = manifest.contributions
    assert [w.display_name for w in contributions.widgets] == [
        "Segment (U-Net)",
        "Weight map (Eq. 2)",
    ]
    assert [s.key for s in contributions.sample_data] == [
        "em_synthetic",
        "em_synthetic_cells",
        "em_stack",
        "touching_cells",
    ]


def test_labels_layer_equals_segment_and_sits_on_the_image(qtbot, viewer, blobs, tiny_checkpoint):
    image = viewer.add_image(blobs[0], name="blobs", **PLACEMENT)
    widget = segment_widget(viewer, tiny_checkpoint)
    assert widget.image.value is image  # the selected layer
    click_and_wait(qtbot, widget)
    labels = viewer.layers["blobs labels"]
    tiles = []
    expected = segment(blobs[0], load_model(tiny_checkpoint), progress=lambda d, t: tiles.append(t))
    assert isinstance(labels, napari.layers.Labels)
    np.testing.assert_array_equal(labels.data, expected)
    np.testing.assert_array_equal(labels.scale, PLACEMENT["scale"])
    np.testing.assert_array_equal(labels.translate, PLACEMENT["translate"])
    assert widget.progress.value == widget.progress.max == tiles[-1]
    assert widget.status.value.startswith(f"{len(np.unique(expected)) - 1} objects in ")
    assert widget.run_button.enabled and not widget.cancel_button.enabled


def test_stack_probabilities_with_tta_and_tile_size(qtbot, viewer, blobs, tiny_checkpoint):
    blobs = blobs[:, :32, :32]
    viewer.add_image(blobs, name="stack", scale=(2.0, 0.5, 0.5))
    widget = segment_widget(viewer, tiny_checkpoint, kind="probabilities", tta="d4", tile_size=56)
    click_and_wait(qtbot, widget)
    shown = viewer.layers["stack probabilities"]
    expected = segment(
        blobs,
        load_model(tiny_checkpoint),
        axes="ZYX",
        output=OutputOptions("probabilities"),
        tta="d4",
        window=56,
    )
    assert isinstance(shown, napari.layers.Image)
    np.testing.assert_array_equal(shown.data, expected)
    np.testing.assert_array_equal(shown.scale, (2.0, 0.5, 0.5))
    assert widget.progress.max == 2 * 2 * 2  # two planes of 2 x 2 tiles of 16 px


def test_running_again_replaces_the_result(qtbot, viewer, blobs, tiny_checkpoint):
    viewer.add_image(blobs[0], name="blobs")
    widget = segment_widget(viewer, tiny_checkpoint, kind="mask")
    click_and_wait(qtbot, widget)
    viewer.layers["blobs"].data = blobs[1]
    click_and_wait(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == ["blobs", "blobs mask"]
    expected = segment(blobs[1], load_model(tiny_checkpoint), output=OutputOptions("mask"))
    np.testing.assert_array_equal(viewer.layers["blobs mask"].data, expected)


def test_cancel_stops_the_worker_and_adds_nothing(qtbot, viewer, rng, tiny_checkpoint):
    viewer.add_image(rng.integers(0, 256, (320, 320), dtype=np.uint8), name="big")
    widget = segment_widget(viewer, tiny_checkpoint, tile_size=56)  # 400 tiles
    widget.run_button.native.click()
    qtbot.waitUntil(lambda: widget.progress.value > 0, timeout=TIMEOUT_MS)
    widget.cancel_button.native.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert [layer.name for layer in viewer.layers] == ["big"]
    status = widget.status.value
    assert status.startswith("cancelled after ") and status.endswith(" of 400 tiles")
    assert int(status.split()[2]) < 400


def test_quitting_the_worker_stops_the_tiles(qtbot, viewer, rng, tiny_checkpoint):
    viewer.add_image(rng.integers(0, 256, (320, 320), dtype=np.uint8), name="big")
    widget = segment_widget(viewer, tiny_checkpoint, tile_size=56)
    widget.run_button.native.click()
    qtbot.waitUntil(lambda: widget.progress.value > 0, timeout=TIMEOUT_MS)
    cancel = widget._cancel
    widget.worker.quit()  # what napari's activity dock and window close do
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert cancel.is_set() and widget.status.value == "stopped"
    assert [layer.name for layer in viewer.layers] == ["big"]


def test_rgb_image_gets_a_message_not_a_traceback(qtbot, viewer, tiny_checkpoint):
    viewer.add_image(np.zeros((40, 40, 3), np.uint8), name="photo", rgb=True)
    widget = segment_widget(viewer, tiny_checkpoint)
    click_and_wait(qtbot, widget)
    assert widget.status.value.startswith("photo: RGB image with 3 channels")
    assert [layer.name for layer in viewer.layers] == ["photo"]


def test_missing_choices_are_reported(qtbot, viewer, tiny_checkpoint):
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.model.value == BUNDLED and widget.model_file.native.isHidden()
    widget.run()
    assert widget.status.value.startswith("open an image layer first")
    viewer.add_image(np.zeros((40, 40), np.uint8), name="img")
    assert widget.request().model is None  # the bundled model
    widget.model.value = FROM_FILE
    assert not widget.model_file.native.isHidden()
    widget.run()
    assert widget.status.value.startswith("choose a model file")


def test_controls_make_the_request(viewer, tiny_checkpoint):
    viewer.add_image(np.zeros((3, 40, 40), np.uint16), name="z")
    widget = segment_widget(viewer, tiny_checkpoint, kind="mask", tta="rot7", tile_size=572)
    request = widget.request()
    assert request.image is viewer.layers["z"].data
    fields = (request.name, request.rgb, request.model, request.kind, request.tta)
    assert fields == ("z", False, str(tiny_checkpoint), "mask", "rot7")
    assert (request.window, request.device) == (572, "cpu")
    full, half = np.zeros((64, 64), np.uint8), np.zeros((32, 32), np.uint8)
    viewer.add_image([full, half], multiscale=True, name="pyramid")
    assert widget.image.value is viewer.layers["pyramid"]  # follows the selection
    assert widget.request().image is full


def test_weight_map_layer_equals_the_librarys(qtbot, viewer):
    labels = tifffile.imread(SAMPLES / "touching_cells_labels.tif")
    viewer.add_labels(labels, name="cells", **PLACEMENT)
    widget = WeightMapWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.w0.value, widget.sigma.value = 8.0, 4.0
    click_and_wait(qtbot, widget)
    shown = viewer.layers["cells weights"]
    config = WeightMapConfig(w0=8.0, sigma=4.0)
    expected = weight_maps([to_instances(labels, label_kind="instance")], config)[0].weights
    np.testing.assert_array_equal(shown.data, expected)
    np.testing.assert_array_equal(shown.scale, PLACEMENT["scale"])
    np.testing.assert_array_equal(shown.translate, PLACEMENT["translate"])
    assert widget.status.value.startswith("w_c = (")


def test_weight_map_of_a_binary_mask(qtbot, viewer):
    mask = tifffile.imread(SAMPLES / "em_synthetic_labels.tif")
    viewer.add_labels(mask, name="membranes")
    widget = WeightMapWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.label_kind.value = "binary"
    assert not widget.foreground.native.isHidden()
    widget.class_weights.value = "none"
    click_and_wait(qtbot, widget)
    expected = weight_maps([to_instances(mask)], WeightMapConfig(class_weights="none"))
    np.testing.assert_array_equal(viewer.layers["membranes weights"].data, expected[0].weights)


def test_plugin_widgets_and_samples_open_through_napari(qtbot, viewer):
    _, widget = viewer.window.add_plugin_dock_widget("biounet", "Segment (U-Net)")
    assert isinstance(widget, SegmentWidget)
    viewer.open_sample("biounet", "touching_cells")
    assert [layer.name for layer in viewer.layers] == ["touching_cells", "touching_cells labels"]
    np.testing.assert_array_equal(
        viewer.layers["touching_cells"].data, tifffile.imread(SAMPLES / "touching_cells.tif")
    )
    assert widget.image.value is viewer.layers["touching_cells"]


def test_bundled_model_on_the_sample_gives_predicts_labels_with_its_rule(qtbot, viewer, tmp_path):
    """The widget's defaults are the model's decision rule: the same labels as `biounet predict`."""
    from click.testing import CliRunner

    from biounet.cli import main

    sample = SAMPLES / "em_synthetic.tif"
    result = CliRunner().invoke(
        main, ["predict", str(sample), "-o", str(tmp_path / "l.tif"), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    viewer.add_image(tifffile.imread(sample), name="em")
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.device.value = "cpu"
    rule = load_model().decision
    assert rule.threshold != 0.5
    assert widget.threshold.value == pytest.approx(rule.threshold, abs=1e-9)
    assert widget.min_size.value == rule.min_size
    click_and_wait(qtbot, widget)
    np.testing.assert_array_equal(
        viewer.layers["em labels"].data, tifffile.imread(tmp_path / "l.tif")
    )
    assert f"threshold {rule.threshold:g}, min size {rule.min_size}" in widget.status.value
    widget.threshold.value = 0.5  # the user's override is applied and shown
    click_and_wait(qtbot, widget)
    assert f"threshold 0.5 (model: {rule.threshold:g})" in widget.status.value
    assert not np.array_equal(viewer.layers["em labels"].data, tifffile.imread(tmp_path / "l.tif"))


def test_from_the_sample_menu_to_labels_without_touching_the_layer_list(
    qtbot, viewer, tiny_checkpoint
):
    """The sample first, then the widget from the Plugins menu, then Segment: nothing else."""
    viewer.open_sample("biounet", "em_synthetic")
    image = viewer.layers["em_synthetic"]
    assert viewer.layers.selection.active is image  # the sample adds one layer, selected
    _, widget = viewer.window.add_plugin_dock_widget("biounet", "Segment (U-Net)")
    assert widget.image.value is image
    widget.model.value = FROM_FILE
    widget.model_file.value = tiny_checkpoint
    widget.device.value = "cpu"
    click_and_wait(qtbot, widget)
    labels = viewer.layers["em_synthetic labels"]
    np.testing.assert_array_equal(labels.data, segment(image.data, load_model(tiny_checkpoint)))
    np.testing.assert_array_equal(labels.scale, image.scale)
    n = len(np.unique(labels.data)) - 1
    assert n > 0 and widget.status.value.startswith(f"{n} objects in ")


def test_segment_picks_images_never_labels_or_weight_maps(qtbot, viewer, tiny_checkpoint):
    viewer.open_sample("biounet", "em_synthetic")
    viewer.open_sample("biounet", "em_synthetic_cells")
    cells = viewer.layers["em_synthetic cells"]
    assert viewer.layers.selection.active is cells  # what the user asked for last
    segmenter = segment_widget(viewer, tiny_checkpoint, kind="probabilities")
    image = viewer.layers["em_synthetic"]
    assert segmenter.image.value is image  # a labels layer selected: the top-most image
    assert [name for name, _ in segmenter._image_layers()] == ["em_synthetic"]
    weights = WeightMapWidget(viewer)
    viewer.window.add_dock_widget(weights)
    assert weights.labels_layer.value is cells
    click_and_wait(qtbot, weights)
    shown = viewer.layers["em_synthetic cells weights"]
    assert viewer.layers.selection.active is shown  # napari selects what was added
    assert segmenter.image.value is image  # ... but a weight map is not an image to segment
    click_and_wait(qtbot, segmenter)
    prob = viewer.layers["em_synthetic probabilities"]
    assert isinstance(prob, napari.layers.Image) and segmenter.image.value is image
    assert [name for name, _ in segmenter._image_layers()] == ["em_synthetic"]
    # a second image on top is chosen when selected; removing it falls back to the first
    other = viewer.add_image(np.zeros((64, 64), np.uint8), name="other")
    assert segmenter.image.value is other
    viewer.layers.selection.active = cells
    assert segmenter.image.value is other
    viewer.layers.remove(other)
    assert segmenter.image.value is image


def _menu_paths(menu, prefix=()):
    """Every path of action texts in a Qt menu, e.g. ('biounet U-Net', 'Segment (U-Net)')."""
    menu.aboutToShow.emit()  # napari fills some menus when they open
    paths = []
    for action in menu.actions():
        if action.isSeparator():
            continue
        path = (*prefix, action.text().replace("&", ""))
        paths.append(path)
        if action.menu() is not None:
            paths += _menu_paths(action.menu(), path)
    return paths


def test_menu_names_in_the_docs_are_napari_s(viewer):
    import re

    bar = viewer.window._qt_window.menuBar()
    paths = set()
    for action in bar.actions():
        paths.update(_menu_paths(action.menu(), (action.text().replace("&", ""),)))
    root = Path(__file__).resolve().parents[2]
    quoted = []
    for doc in ("README.md", "docs/napari.md"):
        text = " ".join((root / doc).read_text().split())
        quoted += re.findall(r"\*((?:File|Plugins) > [^*]+)\*", text)
    assert len(quoted) >= 4
    for path in quoted:
        assert tuple(path.split(" > ")) in paths, f"{path}: not a menu entry of napari"
    for needed in (
        ("Plugins", "biounet U-Net", "Segment (U-Net)"),
        ("Plugins", "biounet U-Net", "Weight map (Eq. 2)"),
        ("File", "Open Sample", "biounet U-Net", "EM slice (synthetic, 512 x 512)"),
    ):
        assert needed in paths and " > ".join(needed) in " ".join(quoted)


def test_class_probability_layers_are_marked_and_not_offered(qtbot, viewer, tmp_path, blobs):
    import torch

    from biounet.network.checkpoint import save_checkpoint
    from biounet.network.unet import UNet, UNetConfig

    torch.manual_seed(1)
    path = save_checkpoint(tmp_path / "k3.pt", UNet(UNetConfig(features=2, depth=2, n_classes=3)))
    image = viewer.add_image(blobs[0], name="blobs")
    widget = segment_widget(viewer, path, kind="probabilities")
    click_and_wait(qtbot, widget)
    expected = segment(blobs[0], load_model(path), output=OutputOptions("probabilities"))
    for k in range(3):
        shown = viewer.layers[f"blobs probabilities class {k}"]
        np.testing.assert_array_equal(shown.data, expected[..., k])
        assert shown.metadata == {"biounet": "probabilities"}
    assert [name for name, _ in widget._image_layers()] == ["blobs"]
    assert widget.image.value is image
