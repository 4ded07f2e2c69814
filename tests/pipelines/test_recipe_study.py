"""pipelines/isbi2012/recipe_study.py: its candidates, table and figure (no training here)."""

import json
from pathlib import Path

import pytest

from biounet.training.config import TrainConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def study(script):
    return script("pipelines/isbi2012/recipe_study.py")


def test_merged_changes_nested_values_only_where_given(study):
    base = {"lr": 0.001, "model": {"features": 16, "depth": 4}}
    got = study.merged(base, {"lr": 0.01, "model": {"features": 32}})
    assert got == {"lr": 0.01, "model": {"features": 32, "depth": 4}}
    assert base["model"]["features"] == 16  # the base is not changed


@pytest.mark.parametrize(
    "name", ["constant_0.001", "poly_0.003_unbalanced", "poly_0.003_width32", "constant_0.003_ema"]
)
def test_each_candidate_is_the_base_recipe_with_its_changes(study, name, tmp_path):
    cfg = study.candidate_config(name, seed=2, data=tmp_path, iterations=1000)
    assert isinstance(cfg, TrainConfig) and cfg.seed == 2
    assert (cfg.momentum, cfg.input_size, cfg.batch_size) == (0.99, 572, 1)  # the paper's
    assert cfg.data.val_count == 4 and cfg.data.images == str(tmp_path / "train-volume.tif")
    changes = study.CANDIDATES[name]
    assert cfg.lr == changes["lr"]
    assert cfg.lr_schedule == changes.get("lr_schedule", "constant")
    assert cfg.warmup == changes.get("warmup", 0)
    width = changes.get("model", {}).get("features", 16)
    assert cfg.model.features == width
    assert cfg.iterations == 1000 * 16 // width  # wider networks: fewer, dearer steps
    assert cfg.weights.class_weights == changes.get("weights", {}).get("class_weights", "balanced")
    assert cfg.ema == changes.get("ema", 0.0)  # the study's runs had no weight averaging


def test_every_candidate_builds_a_valid_config(study, tmp_path):
    for name in study.CANDIDATES:
        study.candidate_config(name, seed=0, data=tmp_path, iterations=100)


def test_table_and_figure_from_score_records(study, tmp_path):
    def write(run, rows):
        (tmp_path / run).mkdir()
        lines = [
            json.dumps({"step": s, "minutes": m, "rand_error": r, "warping_error": w,
                        "pixel_error": p})
            for s, m, r, w, p in rows
        ]  # fmt: skip
        (tmp_path / run / "scores.jsonl").write_text("\n".join(lines) + "\n")

    write("poly_0.01_s0", [(250, 2.0, 0.5, 0.002, 0.08), (500, 4.0, 0.3, 0.001, 0.06)])
    write("poly_0.01_s1", [(250, 2.1, 0.6, 0.003, 0.09), (500, 4.2, 0.4, 0.002, 0.07)])
    write("constant_0.001_s0", [(500, 3.9, 0.45, 0.0015, 0.065)])
    found = study.curves(tmp_path)
    assert sorted(found) == ["constant_0.001", "poly_0.01"] and sorted(found["poly_0.01"]) == [0, 1]
    text = study.table(found)
    row = next(line for line in text.splitlines() if line.startswith("| poly_0.01 "))
    # mean and sample standard deviation over the two seeds' last scores
    assert "| 2 | 500 | 4.1 | 0.350 ± 0.071 | 0.001500 ± 0.000707 | 0.0650 ± 0.0071 |" in row
    assert "| constant_0.001 | 1 | 500 | 3.9 | 0.450 | 0.001500 | 0.0650 |" in text
    study.figure(found, tmp_path / "recipe.png")
    assert (tmp_path / "recipe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
