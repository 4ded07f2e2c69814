"""The model that ships with biounet: present, compact, the default, and good on ISBI."""

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from click.testing import CliRunner

from biounet.cli import main
from biounet.evaluation.isbi import evaluate_isbi
from biounet.inference.segmentation import predict
from biounet.network.bundled import BUNDLED, default_model_path
from biounet.network.checkpoint import load_checkpoint
from biounet.network.unet import UNet, UNetConfig


def test_bundled_model_is_compact_and_loads_as_float32():
    path = default_model_path()
    assert path.stat().st_size < 5 * 2**20
    ckpt = load_checkpoint(path)
    assert "train_state" not in ckpt  # weights only, no optimiser state
    assert all(t.dtype == torch.float16 for t in ckpt["model_state"].values())
    model = UNet.from_checkpoint(path)
    assert model.config == UNetConfig(features=16)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_predict_uses_the_bundled_model_by_default(tmp_path):
    sample = Path(__file__).resolve().parents[2] / "sample_data" / "em_synthetic.tif"
    out_default, out_explicit = tmp_path / "a.tif", tmp_path / "b.tif"
    runner = CliRunner()
    r = runner.invoke(main, ["predict", str(sample), "-o", str(out_default), "--kind", "mask"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        main,
        ["predict", str(sample), "-o", str(out_explicit), "--kind", "mask"]
        + ["--model", str(BUNDLED)],
    )
    assert r.exit_code == 0, r.output
    mask = tifffile.imread(out_default)
    assert np.array_equal(mask, tifffile.imread(out_explicit))
    truth = tifffile.imread(sample.with_name("em_synthetic_labels.tif"))
    scores = evaluate_isbi((mask > 0).astype(float), truth, metrics=("pixel",))
    assert scores["pixel_error"] < 0.06  # README: pixel error 0.051 on the sample


@pytest.mark.isbi
def test_bundled_model_segments_held_out_isbi_slices(isbi_dir):
    """Slices 20-23 were held out of its training (model card: pixel error about 0.07)."""
    images = tifffile.imread(isbi_dir / "train-volume.tif")[20:24]
    truth = tifffile.imread(isbi_dir / "train-labels.tif")[20:24]
    prob = predict(images, UNet.from_checkpoint(BUNDLED), axes="ZYX")[:, 1]
    scores = evaluate_isbi(prob, truth, metrics=("pixel",))
    assert scores["pixel_error"] < 0.10
