"""One model, one answer: every entry point gives `biounet predict`'s labels (issue 21).

The bundled model on the synthetic EM sample, with its calibrated decision
rule (threshold 0.25, not 0.5), through: the command line, ``biounet.segment``,
``segment_file``, ``predict --model`` on the bioimage.io package that
``export-bioimageio`` writes, and ``predict --workers 2`` (Dask). The napari
widget's pair is in tests/napari_plugin/test_widgets.py.
"""

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from click.testing import CliRunner

from biounet.cli import main
from biounet.inference.files import segment_file
from biounet.inference.segmentation import segment
from biounet.network.decision import DecisionRule
from biounet.network.unet import load_model

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "em_synthetic.tif"


@pytest.fixture(scope="module")
def one_thread():
    """The arithmetic of the 1-thread Dask workers, so that probabilities are bit-identical."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def predict_cli(out: Path, *extra: str) -> np.ndarray:
    args = ["predict", str(SAMPLE), "-o", str(out), "--device", "cpu", "--no-progress", *extra]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return tifffile.imread(out)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, one_thread):
    """What `biounet predict` writes with the bundled model."""
    return predict_cli(tmp_path_factory.mktemp("cli") / "labels.tif")


def test_the_reference_uses_the_models_rule_not_one_half(reference, tmp_path):
    model = load_model()
    assert model.decision.threshold != 0.5  # the bundled model is calibrated
    at_half = predict_cli(tmp_path / "half.tif", "--threshold", "0.5")
    assert reference.dtype == np.uint16 and reference.max() > 50
    assert (reference > 0).mean() > (at_half > 0).mean()  # a lower threshold: more foreground


def test_segment_equals_predict(reference):
    image = tifffile.imread(SAMPLE)
    np.testing.assert_array_equal(segment(image, load_model()), reference)


def test_segment_file_equals_predict(reference, tmp_path):
    summary = segment_file(SAMPLE, tmp_path / "lib.tif", load_model())
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "lib.tif"), reference)
    assert summary.objects == int(reference.max())


def test_exported_package_carries_the_rule_and_gives_the_same_labels(reference, tmp_path):
    pytest.importorskip("bioimageio.spec")
    package = tmp_path / "model.zip"
    result = CliRunner().invoke(main, ["export-bioimageio", "-o", str(package)])
    assert result.exit_code == 0, result.output
    bundled, exported = load_model(), load_model(package)
    assert exported.decision == bundled.decision != DecisionRule()
    np.testing.assert_array_equal(
        predict_cli(tmp_path / "pkg.tif", "--model", str(package)), reference
    )


def test_dask_equals_predict(reference, tmp_path):
    pytest.importorskip("distributed")
    np.testing.assert_array_equal(predict_cli(tmp_path / "dask.tif", "--workers", "2"), reference)
