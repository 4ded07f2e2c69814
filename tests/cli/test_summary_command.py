from click.testing import CliRunner

from biounet import __version__
from biounet.cli import main


def test_version_and_help():
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0 and "summary" in r.output


def test_summary_paper():
    r = CliRunner().invoke(main, ["summary"])
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
    r = CliRunner().invoke(main, ["summary", "--input-size", "700", "--flavour", "release"])
    assert r.exit_code == 0, r.output
    assert "31,100,354" in r.output and "516" in r.output


def test_summary_invalid_size():
    r = CliRunner().invoke(main, ["summary", "--input-size", "571"])
    assert r.exit_code == 1
    assert r.output.startswith("Error: --input-size 571")
    assert "556 and 572" in r.output and "Traceback" not in r.output
