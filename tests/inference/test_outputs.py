"""In-memory segment(): the same labels, masks and probabilities as the file path."""

import numpy as np
import pytest
import tifffile
import torch

from biounet.inference.files import predict_files, segment_file
from biounet.inference.outputs import encode, foreground_probability
from biounet.inference.segmentation import predict, segment
from biounet.network.unet import UNet, UNetConfig
from biounet.options import InstanceOptions, OutputOptions, TileOptions


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(5)
    model = UNet(UNetConfig(features=4, depth=2))
    with torch.no_grad():  # a bias that puts the decision near 0.5 for some pixels
        model.head.bias.copy_(torch.tensor([0.0, 0.02]))
    return model.eval()


@pytest.fixture
def stack(rng):
    # smooth blobs so that objects span several tiles
    from scipy.ndimage import gaussian_filter

    noise = rng.normal(size=(2, 150, 170))
    return (255 * (gaussian_filter(noise, (0, 4, 4)) > 0)).astype(np.uint8)


@pytest.mark.parametrize(
    "output",
    [
        OutputOptions("labels"),
        OutputOptions("labels", instances=InstanceOptions("watershed", 0.5, 0.55, 3)),
        OutputOptions("labels", instances=InstanceOptions("distance", 0.5, split_depth=1.5)),
        OutputOptions("labels", instances=InstanceOptions(min_size=2)),
        OutputOptions("mask", instances=InstanceOptions(threshold=0.45)),
        OutputOptions("probabilities", "uint16"),
    ],
    ids=["components", "watershed", "distance", "min_size", "mask", "probabilities"],
)
def test_segment_equals_segment_file(tmp_path, net, stack, output):
    window = 76  # several tiles per plane: objects cross tile borders
    tiles = TileOptions(window=window)
    path = tmp_path / "in.tif"
    tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "ZYX"})
    segment_file(path, tmp_path / "out.tif", net, tiles=tiles, output=output)
    on_disk = tifffile.imread(tmp_path / "out.tif")
    in_memory = segment(stack, net, axes="ZYX", output=output, window=window)
    assert in_memory.shape == on_disk.shape == stack.shape
    assert in_memory.dtype == on_disk.dtype
    np.testing.assert_array_equal(in_memory, on_disk)
    if output.kind == "labels":
        assert in_memory.max() > 1  # several objects: the case is not trivial


def test_segment_labels_are_the_components_of_the_thresholded_prediction(net, stack):
    from skimage.measure import label

    labels = segment(stack[0], net, window=76)
    prob = predict(stack[0], net, window=76)[0]
    fg = prob[1] > 0.5
    np.testing.assert_array_equal(labels > 0, fg)
    assert labels.max() == label(fg, connectivity=1).max()


def test_distance_labels_are_the_calibrations_split_of_the_prediction(net, stack):
    """What `--instances distance` writes is what the CTC folds calibrated and scored."""
    from biounet.training.calibrate import distance_split

    options = InstanceOptions("distance", 0.7, split_depth=0.5)  # small objects, split
    labels = segment(stack[0], net, window=76, output=OutputOptions("labels", instances=options))
    prob = predict(stack[0], net, window=76)[0, 1]
    ref = distance_split(prob[None], 0.7, 0, 0.5)[0]
    assert ref.max() > label_count(prob > 0.7)  # the split splits something here
    pairs = np.unique(np.stack([labels.ravel(), ref.ravel()]), axis=1)
    assert len(pairs[0]) == len(np.unique(labels)) == len(np.unique(ref))  # the same objects


def label_count(mask):
    from skimage.measure import label

    return label(mask, connectivity=1).max()


def test_progress_callback_sees_every_tile(net, stack):
    seen = []
    segment(stack, net, axes="ZYX", window=76, progress=lambda d, t: seen.append((d, t)))
    total = seen[-1][1]
    assert seen == [(i, total) for i in range(1, total + 1)]
    assert total > 2 and total % 2 == 0  # two planes, the same tiles each


def test_encode_and_foreground_by_hand():
    p = np.array([[[0.7, 0.2]], [[0.1, 0.5]], [[0.2, 0.3]]])  # 3 classes
    np.testing.assert_allclose(foreground_probability(p), [[0.3, 0.8]])
    assert encode(p, OutputOptions("mask")).tolist() == [[0, 1]]
    assert encode(p, OutputOptions("probabilities")).shape == (1, 2, 3)
    with pytest.raises(ValueError, match="not 'labels'"):
        encode(p, OutputOptions("labels"))


def test_predict_files_names_outputs_after_inputs(tmp_path, net, stack):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.ome.tif", "b.tiff"):
        tifffile.imwrite(folder / name, stack[0])
    done = list(predict_files([folder], tmp_path / "out", net, output=OutputOptions("mask")))
    assert [s.output.name for s, _ in done] == ["a_mask.tif", "b_mask.tif"]
    assert all(png is None for _, png in done)


def test_the_models_decision_rule_is_the_default(tmp_path, net, stack):
    from click.testing import CliRunner

    from biounet.cli import main
    from biounet.network.checkpoint import save_checkpoint
    from biounet.network.decision import DecisionRule

    calibrated = UNet(net.config, decision=DecisionRule(0.505, 3, "test"))
    calibrated.load_state_dict(net.state_dict())
    rule = OutputOptions(instances=InstanceOptions(threshold=0.505, min_size=3))
    expected = segment(stack[0], net, window=76, output=rule)
    plain = segment(stack[0], net, window=76)  # the neutral rule: 0.5, no minimum size
    assert not np.array_equal(expected, plain)  # the rule matters here
    np.testing.assert_array_equal(segment(stack[0], calibrated.eval(), window=76), expected)
    save_checkpoint(tmp_path / "m.pt", calibrated)
    tifffile.imwrite(tmp_path / "in.tif", stack[0])
    runner = CliRunner()
    for extra, want in (([], expected), (["--threshold", "0.5", "--min-size", "0"], plain)):
        args = ["predict", str(tmp_path / "in.tif"), "-o", str(tmp_path / "o.tif"), "--overwrite"]
        r = runner.invoke(
            main, [*args, "--model", str(tmp_path / "m.pt"), "--window", "76", *extra]
        )
        assert r.exit_code == 0, r.output
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "o.tif"), want)


def test_float64_pixels_computed_in_float32_are_said_once(caplog, net):
    image = np.linspace(0, 1, 40 * 50).reshape(40, 50)
    with caplog.at_level("INFO", logger="biounet"):
        a = segment(image, net)
    said = [r.getMessage() for r in caplog.records]
    assert said == ["<array>: float64 pixels are computed in float32, the network's precision"]
    np.testing.assert_array_equal(a, segment(image.astype(np.float32), net))
