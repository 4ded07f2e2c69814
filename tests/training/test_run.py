"""Run folders: resumes are checked against the config in latest.pt; failed starts leave nothing."""

import pytest
import yaml
from click.testing import CliRunner
from tiny_runs import tiny_config, write_cells

from biounet.cli import main
from biounet.errors import BiounetError
from biounet.network.checkpoint import load_checkpoint
from biounet.network.unet import UNetConfig
from biounet.training.config import TrainConfig, dump_config
from biounet.training.run import changed_settings, check_resume


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_cells(
        tmp_path_factory.mktemp("run_data"), count=3, size=64, n_cells=4, radius=(8, 12)
    )


def _config(data, **changes) -> TrainConfig:
    defaults = {"iterations": 2, "val_every": 1000, "checkpoint_every": 1}
    return tiny_config(data, **{**defaults, **changes})


def _train(*args):
    return CliRunner().invoke(main, ["-q", "train", *map(str, args), "--no-progress"])


def test_changed_settings_name_every_key_but_the_resumable_ones():
    saved = TrainConfig()
    new = TrainConfig(lr=0.01, seed=3, iterations=5, workers=0, ema=0.5, time_limit="1h")
    assert changed_settings(saved, new) == [f"lr: {saved.lr:g} -> 0.01", "seed: 0 -> 3"]
    nested = TrainConfig(model=UNetConfig(features=8))
    assert changed_settings(saved, nested) == ["model.features: 64 -> 8"]
    assert changed_settings(saved, saved) == []


def test_an_edited_config_yaml_is_refused_then_accepted(tmp_path, data):
    """The resume check reads latest.pt, not config.yaml: an edited lr is caught."""
    run = tmp_path / "r"
    (tmp_path / "run.yaml").write_text(dump_config(_config(data)))
    r = _train("--config", tmp_path / "run.yaml", "--out", run)
    assert r.exit_code == 0, r.output
    edited = yaml.safe_load((run / "config.yaml").read_text())
    edited["lr"] = 0.01
    (run / "config.yaml").write_text(yaml.safe_dump(edited))
    before = (run / "latest.pt").read_bytes()
    r = _train("--resume", run, "--iterations", 4)
    assert r.exit_code == 1 and r.stderr.count("\n") == 1, r.output
    lr = _config(data).lr  # the default, saved in latest.pt
    assert f"lr is {lr:g} in latest.pt, not 0.01" in r.stderr and "--accept-changes" in r.stderr
    assert (run / "latest.pt").read_bytes() == before  # nothing was trained
    with pytest.raises(BiounetError, match=f"lr is {lr:g} in latest.pt, not 0.01"):
        check_resume(TrainConfig.from_dict(edited), run)
    assert check_resume(TrainConfig.from_dict(edited), run, accept_changes=True) == (
        f"lr: {lr:g} -> 0.01"
    )
    r = _train("--resume", run, "--iterations", 4, "--accept-changes")
    assert r.exit_code == 0, r.output
    state = load_checkpoint(run / "latest.pt")["train_state"]
    assert state["step"] == 4 and state["config"]["lr"] == 0.01
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.01)
    r = _train("--resume", run, "--iterations", 5)  # the change is now the saved setting
    assert r.exit_code == 0, r.output


def test_resume_with_a_config_file_compares_it_too(tmp_path, data):
    run = tmp_path / "r"
    (tmp_path / "run.yaml").write_text(dump_config(_config(data)))
    assert _train("--config", tmp_path / "run.yaml", "--out", run).exit_code == 0
    (tmp_path / "other.yaml").write_text(dump_config(_config(data, seed=7, iterations=3)))
    r = _train("--resume", run, "--config", tmp_path / "other.yaml")
    assert r.exit_code == 1 and "seed is 0 in latest.pt, not 7" in r.stderr, r.output
    r = _train("--resume", run, "--config", tmp_path / "other.yaml", "--accept-changes")
    assert r.exit_code == 0, r.output
    assert load_checkpoint(run / "latest.pt")["train_state"]["config"]["seed"] == 7


def test_a_failed_start_in_an_empty_folder_leaves_it_empty(tmp_path, data):
    """The weight-map cache of a run that failed before its first checkpoint goes too."""
    run = tmp_path / "r"
    run.mkdir()
    (tmp_path / "bad.yaml").write_text(
        dump_config(_config(data, lr=1e12, checkpoint_every=1000))
    )  # diverges
    r = _train("--config", tmp_path / "bad.yaml", "--out", run)
    assert r.exit_code == 1 and "the loss is" in r.stderr, r.output
    assert list(run.iterdir()) == []
    (tmp_path / "good.yaml").write_text(dump_config(_config(data)))
    r = _train("--config", tmp_path / "good.yaml", "--out", run)  # the next start is accepted
    assert r.exit_code == 0, r.output


def test_a_failed_start_keeps_someone_elses_cache(tmp_path, data):
    run = tmp_path / "r"
    (run / "cache").mkdir(parents=True)
    (run / "cache" / "theirs.npz").write_bytes(b"a previous run's cache")
    (tmp_path / "bad.yaml").write_text(dump_config(_config(data, lr=1e12, checkpoint_every=1000)))
    r = _train("--config", tmp_path / "bad.yaml", "--out", run, "--overwrite")
    assert r.exit_code == 1, r.output
    assert (run / "cache" / "theirs.npz").read_bytes() == b"a previous run's cache"


def test_a_config_file_is_read_only_up_to_its_limit(tmp_path, monkeypatch):
    import biounet.training.config as config
    from biounet.training.config import load_config

    (tmp_path / "big.yaml").write_text("lr: 0.01\n" + "#" * 100 + "\n")
    monkeypatch.setattr(config, "MAX_CONFIG_BYTES", 100)
    with pytest.raises(BiounetError, match="more than 100 bytes; not a config"):
        load_config(tmp_path / "big.yaml")
    monkeypatch.setattr(config, "MAX_CONFIG_BYTES", 200)
    assert load_config(tmp_path / "big.yaml").lr == 0.01
