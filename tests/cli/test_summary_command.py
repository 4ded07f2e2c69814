from click.testing import CliRunner

from biounet import __version__
from biounet.cli import main


def test_version_and_help():
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0 and "summary" in r.output


def test_summary_paper():
    r = CliRunner().invoke(main, ["summary", "--paper"])
    assert r.exit_code == 0, r.output
    out = r.output
    for text in (
        "31,030,658",
        "23 (18 3x3, 4 2x2 up-convolutions, 1 1x1)",
        "halo: 92 px",
        "388",
        "556, 572, 588",
    ):
        assert text in out
    for size in ("568", "280", "136", "64", "28", "52", "100", "196"):
        assert f"  {size}  " in out or f"  {size}\n" in out


def test_summary_user_size_and_release():
    args = ["summary", "--paper", "--input-size", "700", "--flavour", "release"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "31,100,354" in r.output and "516" in r.output


def test_summary_invalid_size():
    r = CliRunner().invoke(main, ["summary", "--input-size", "571"])
    assert r.exit_code == 1
    assert r.output.startswith("Error: --input-size 571")
    assert "556 and 572" in r.output and "Traceback" not in r.output


def _parameters(output):
    line = next(ln for ln in output.splitlines() if ln.startswith("parameters: "))
    return int(line.split()[1].replace(",", ""))


def test_summary_defaults_to_the_bundled_model():
    from biounet.network.unet import load_model

    bundled = load_model()
    r = CliRunner().invoke(main, ["summary"])
    assert r.exit_code == 0, r.output
    title = r.output.splitlines()[0]
    assert title.startswith("the bundled model: U-Net, paper flavour, valid padding: depth 4, ")
    assert f"{bundled.config.features} base features" in title
    # the count printed is the count of the weights that ship
    assert _parameters(r.output) == sum(p.numel() for p in bundled.parameters())
    assert bundled.config.features == 16


def test_summary_of_a_checkpoint_and_changes(tmp_path):
    import torch

    from biounet.network.checkpoint import save_checkpoint
    from biounet.network.unet import UNet, UNetConfig

    torch.manual_seed(0)
    net = UNet(UNetConfig(features=4, depth=2, n_classes=3))
    save_checkpoint(tmp_path / "m.pt", net)
    r = CliRunner().invoke(
        main, ["summary", "--model", str(tmp_path / "m.pt"), "--input-size", "188"]
    )
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0].startswith(f"{tmp_path / 'm.pt'}: U-Net, paper flavour")
    assert "depth 2, 4 base features, 1 input channel(s), 3 classes" in r.output
    assert _parameters(r.output) == sum(p.numel() for p in net.parameters())
    r = CliRunner().invoke(main, ["summary", "--features", "8"])
    assert r.output.splitlines()[0].startswith("the bundled model, --features 8: U-Net")
    wider = UNet(UNetConfig(features=8))
    assert _parameters(r.output) == sum(p.numel() for p in wider.parameters())


def test_summary_paper_and_model_exclude_each_other(tmp_path):
    r = CliRunner().invoke(main, ["summary", "--paper", "--model", str(tmp_path / "m.pt")])
    assert r.exit_code == 1
    assert r.stderr.strip() == "Error: --paper and --model: choose one network"
