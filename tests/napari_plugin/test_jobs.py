"""The plugin's Qt-free work: progress per tile, cancellation, model loading, weight maps."""

import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from biounet.errors import BiounetError
from biounet.inference.segmentation import segment
from biounet.napari import samples
from biounet.napari.jobs import (
    Cancelled,
    ModelCache,
    SegmentRequest,
    WeightMapRequest,
    segment_job,
    weight_map_job,
    with_progress,
)
from biounet.napari.layers import choose_layer, image_axes, is_output, output_metadata
from biounet.network.checkpoint import save_checkpoint
from biounet.network.unet import UNet, UNetConfig, load_model
from biounet.options import OutputOptions
from biounet.training.data import to_instances
from biounet.training.weight_map import WeightMapConfig, weight_maps

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


def run(job):
    """Drive a generator job to its end: (updates, return value)."""
    updates = []
    while True:
        try:
            updates.append(next(job))
        except StopIteration as stop:
            return updates, stop.value


def test_with_progress_passes_on_the_works_exception():
    def work(progress):
        progress(1, 2)
        raise BiounetError("broken")

    steps = with_progress(work, threading.Event())
    assert next(steps) == (1, 2)
    with pytest.raises(BiounetError, match="broken"):
        next(steps)


def test_cancel_stops_the_work_at_the_next_tile(rng, tiny_checkpoint):
    model = load_model(tiny_checkpoint)
    image = rng.integers(0, 256, (160, 160), dtype=np.uint8)
    reported = []

    def work(progress):
        def count(done, total):
            reported.append(done)
            progress(done, total)

        return segment(image, model, window=56, progress=count)

    cancel = threading.Event()
    steps = with_progress(work, cancel)
    done, total = next(steps)
    assert (done, total) == (1, 100)  # 10 x 10 tiles of 16 px
    cancel.set()
    with pytest.raises(Cancelled) as info:
        for _ in steps:
            pass
    # the first tile to see the event was the last one computed, long before the end
    assert str(info.value) == f"cancelled after {reported[-1]} of 100 tiles"
    assert reported[-1] < total


def test_closing_the_generator_cancels_the_work():
    release = threading.Event()
    calls = []

    def work(progress):
        for i in range(1000):
            calls.append(i)
            progress(i + 1, 1000)
            release.wait(0.001)
        return "all"

    cancel = threading.Event()
    steps = with_progress(work, cancel)
    next(steps)
    steps.close()  # joins the helper thread
    assert cancel.is_set()
    assert len(calls) < 1000


@pytest.mark.parametrize(
    ("kind", "shape", "axes"),
    [
        ("labels", (60, 70), "YX"),
        ("probabilities", (2, 60, 70), "ZYX"),
        ("mask", (2, 60, 70), "ZYX"),
    ],
)
def test_segment_job_returns_what_segment_returns(blobs, tiny_checkpoint, kind, shape, axes):
    image = blobs[0] if len(shape) == 2 else blobs
    request = SegmentRequest(
        image, rgb=False, name="blobs", model=str(tiny_checkpoint), kind=kind, device="cpu"
    )
    updates, outcome = run(segment_job(request, threading.Event(), ModelCache()))
    expected = segment(image, load_model(tiny_checkpoint), axes=axes, output=OutputOptions(kind))
    assert outcome.status == "done"
    assert outcome.data.dtype == expected.dtype
    np.testing.assert_array_equal(outcome.data, expected)
    assert updates[-1][0] == updates[-1][1] == len(updates)
    if kind == "labels":
        assert outcome.message.startswith(f"{len(np.unique(expected)) - 1} objects in ")


def test_segment_job_with_tta_and_window(blobs, tiny_checkpoint):
    image = blobs[0, :32, :60]
    request = SegmentRequest(
        image, rgb=False, name="b", model=str(tiny_checkpoint), tta="d4", window=56
    )
    updates, outcome = run(segment_job(request, threading.Event(), ModelCache()))
    expected = segment(image, load_model(tiny_checkpoint), tta="d4", window=56)
    np.testing.assert_array_equal(outcome.data, expected)
    assert len(updates) == 2 * 4  # 16-px tiles over 32 x 60


@pytest.mark.parametrize(
    ("request_kwargs", "message"),
    [
        ({"image": np.zeros((40, 40, 3), np.uint8), "rgb": True}, "RGB image with 3 channels"),
        ({"model": "/nonexistent/model.pt"}, "no such checkpoint file"),
        ({"window": 42}, "42 is not a valid input size"),
        ({"device": "cuda:7"}, "device='cuda:7'"),
    ],
)
def test_segment_job_reports_bad_input_in_one_line(tiny_checkpoint, request_kwargs, message):
    values = {"image": np.zeros((40, 40), np.uint8), "rgb": False, "model": str(tiny_checkpoint)}
    request = SegmentRequest(**{**values, **request_kwargs}, name="layer")
    updates, outcome = run(segment_job(request, threading.Event(), ModelCache()))
    assert outcome.status == "failed"
    assert message in outcome.message
    assert "\n" not in outcome.message and "<array>" not in outcome.message
    assert outcome.data is None and updates == []


def test_segment_job_cancelled_before_it_starts(tiny_checkpoint):
    cancel = threading.Event()
    cancel.set()
    request = SegmentRequest(np.zeros((40, 40), np.uint8), False, "x", str(tiny_checkpoint))
    updates, outcome = run(segment_job(request, cancel, ModelCache()))
    assert (updates, outcome.status, outcome.data) == ([], "cancelled", None)


def test_model_cache_loads_once_and_again_when_the_file_changes(tmp_path):
    path = tmp_path / "m.pt"
    torch.manual_seed(0)
    save_checkpoint(path, UNet(UNetConfig(features=4, depth=2)))
    cache = ModelCache()
    first = cache.get(str(path))
    assert cache.get(str(path)) is first
    torch.manual_seed(1)
    save_checkpoint(path, UNet(UNetConfig(features=4, depth=3)))
    second = cache.get(str(path))
    assert second is not first and second.config.depth == 3


def test_model_cache_none_is_the_bundled_model():
    bundled = ModelCache().get(None)
    reference = load_model()
    assert bundled.config == reference.config
    for (name, a), (_, b) in zip(
        bundled.state_dict().items(), reference.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


@pytest.mark.parametrize(
    ("shape", "rgb", "channels", "axes"),
    [
        ((64, 64), False, 1, "YX"),
        ((3, 64, 64), False, 1, "ZYX"),
        ((2, 3, 64, 64), False, 1, "TZYX"),
        ((64, 64, 3), True, 3, "YXC"),
        ((5, 64, 64, 4), True, 4, "ZYXC"),
    ],
)
def test_image_axes(shape, rgb, channels, axes):
    assert image_axes(shape, rgb=rgb, channels=channels, name="x") == axes


def test_image_axes_explain_channel_mismatches():
    with pytest.raises(BiounetError, match="photo: RGBA image with 4 channels.*greyscale"):
        image_axes((8, 8, 4), rgb=True, channels=1, name="photo")
    with pytest.raises(BiounetError, match="expects 3 channels"):
        image_axes((8, 8), rgb=False, channels=3, name="grey")


def test_weight_map_job_equals_the_librarys_weight_maps():
    labels = tifffile.imread(SAMPLES / "touching_cells_labels.tif")
    config = WeightMapConfig(w0=8.0, sigma=4.0)
    outcome = weight_map_job(WeightMapRequest(labels, "cells", config))
    expected = weight_maps([to_instances(labels, label_kind="instance")], config)[0].weights
    assert outcome.status == "done"
    assert outcome.data.dtype == np.float32
    np.testing.assert_array_equal(outcome.data, expected)


def test_weight_map_job_balances_classes_over_all_planes():
    binary = np.zeros((2, 30, 40), np.uint8)
    binary[0, 5:15, 5:15] = 255
    binary[0, 5:15, 16:30] = 255
    binary[1, 10:25, 10:35] = 255
    request = WeightMapRequest(binary, "mask", label_kind="binary")
    outcome = weight_map_job(request)
    expected = weight_maps([to_instances(p) for p in binary], WeightMapConfig())
    np.testing.assert_array_equal(outcome.data, np.stack([t.weights for t in expected]))
    assert outcome.data.shape == binary.shape


def test_weight_map_job_reports_empty_labels():
    outcome = weight_map_job(WeightMapRequest(np.zeros((2, 9, 9), np.uint16), "empty"))
    assert outcome.status == "failed" and outcome.data is None
    assert outcome.message == "empty plane 0: label image has no objects (all 0)"


@pytest.mark.parametrize(
    ("make", "files"),
    [
        (samples.em_synthetic, ["em_synthetic.tif"]),
        (samples.em_stack, ["em_stack.tif"]),
        (samples.touching_cells, ["touching_cells.tif", "touching_cells_labels.tif"]),
    ],
)
def test_samples_are_the_files_of_sample_data(make, files):
    layers = make()
    for (data, _, _), name in zip(layers, files, strict=False):
        stored = tifffile.imread(SAMPLES / name)
        assert data.dtype == stored.dtype
        np.testing.assert_array_equal(data, stored)


def test_em_sample_cells_match_the_stored_ground_truth():
    ((_, meta, image_kind),) = samples.em_synthetic()  # one layer: the selected one
    ((cells, cell_meta, kind),) = samples.em_synthetic_cells()
    stored = tifffile.imread(SAMPLES / "em_synthetic_labels.tif")
    np.testing.assert_array_equal(np.where(cells > 0, 255, 0), stored)
    assert (image_kind, kind) == ("image", "labels")
    assert meta["scale"] == cell_meta["scale"] == (0.004, 0.004)
    assert cell_meta.get("visible", True)  # asked for, so shown


def test_choose_layer_prefers_the_selection_then_the_choice_then_the_top():
    a, b, c = object(), object(), object()
    labels = object()
    assert choose_layer([a, b, c], b, a) is b  # the selected candidate
    assert choose_layer([a, b, c], labels, a) is a  # a labels layer selected: keep the choice
    assert choose_layer([a, b, c], labels, None) is c  # nothing chosen: the top-most
    assert choose_layer([a, b], labels, c) is b  # the choice was removed
    assert choose_layer([], labels, a) is None


def test_outputs_are_marked():
    assert is_output(output_metadata("weight map")) and is_output({"biounet": "probabilities"})
    assert not is_output({}) and not is_output({"other": 1}) and not is_output(None)
