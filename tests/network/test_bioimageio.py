"""bioimage.io packages: export, `bioimageio test`, and reading them back with load_model."""

import warnings
import zipfile

import numpy as np
import pytest
import tifffile
import torch
import yaml
from click.testing import CliRunner

pytest.importorskip("bioimageio.spec", reason="needs the bioimageio extra (the dev extra)")

from biounet import BiounetError
from biounet.cli import main
from biounet.inference.segmentation import predict
from biounet.io.units import PixelSize
from biounet.network.bioimageio import export_bioimageio, package_pixel_size, sample_image
from biounet.network.checkpoint import save_checkpoint
from biounet.network.normalize import Normalization
from biounet.network.unet import UNet, UNetConfig, load_model


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    torch.manual_seed(0)
    model = UNet(UNetConfig(features=4), Normalization("fixed", 10.0, 250.0)).eval()
    folder = tmp_path_factory.mktemp("bio")
    save_checkpoint(folder / "m.pt", model)
    args = ["--model", str(folder / "m.pt"), "-o", str(folder / "m.zip"), "--pixel-size", "4nm"]
    r = CliRunner().invoke(main, ["export-bioimageio", *args])
    assert r.exit_code == 0, r.output
    return model, folder


def _rdf(path):
    with zipfile.ZipFile(path) as zf:
        return yaml.safe_load(
            zf.read("rdf.yaml" if "rdf.yaml" in zf.namelist() else "bioimageio.yaml")
        )


def test_description_states_sizes_processing_and_citation(package):
    model, folder = package
    rdf = _rdf(folder / "m.zip")
    assert rdf["format_version"].startswith("0.5")
    (inp,), (out,) = rdf["inputs"], rdf["outputs"]
    y = next(a for a in inp["axes"] if a.get("id") == "y")
    assert y["size"] == {"min": 188, "step": 16}
    oy = next(a for a in out["axes"] if a.get("id") == "y")
    assert oy["size"]["offset"] == -184 and oy["size"]["tensor_id"] == "raw"
    scale = next(p for p in inp["preprocessing"] if p["id"] == "scale_linear")["kwargs"]
    assert scale["gain"] == pytest.approx(1 / 240) and scale["offset"] == pytest.approx(-10 / 240)
    assert out["postprocessing"][0]["id"] == "softmax"
    arch = rdf["weights"]["pytorch_state_dict"]["architecture"]
    assert (arch["import_from"], arch["callable"]) == ("biounet.network.unet", "unet_from_config")
    assert rdf["weights"]["torchscript"]["parent"] == "pytorch_state_dict"
    assert rdf["cite"][0]["doi"] == "10.1007/978-3-319-24574-4_28"
    assert rdf["license"] == "BSD-3-Clause" and rdf["covers"] and rdf["documentation"]


def test_space_axes_have_the_training_pixel_size(package):
    _, folder = package
    rdf = _rdf(folder / "m.zip")
    for tensor in (rdf["inputs"][0], rdf["outputs"][0]):
        space = [a for a in tensor["axes"] if a["type"] == "space"]
        assert [(a["id"], a["unit"], a["scale"]) for a in space] == [
            ("y", "nanometer", 4.0),
            ("x", "nanometer", 4.0),
        ]
    with zipfile.ZipFile(folder / "m.zip") as zf:
        readme = zf.read("README.md").decode()
    assert "Pixel size of the training data: 4 nm" in readme
    assert "pypi.org" not in readme


def test_package_pixel_size_sources(tmp_path):
    assert package_pixel_size("0.5", None, "m.pt") == PixelSize(0.5, 0.5, None, "µm")
    assert package_pixel_size(None, None, None) == PixelSize(4.0, 4.0, 50.0, "nm")  # bundled
    assert package_pixel_size(None, None, "m.pt") is None  # a checkpoint of unknown data
    tifffile.imwrite(tmp_path / "s.tif", np.zeros((8, 8), np.uint8), resolution=(2, 2),
                     resolutionunit=5)  # fmt: skip
    assert package_pixel_size(None, tmp_path / "s.tif", "m.pt") == PixelSize(0.5, 0.5, None, "µm")
    tifffile.imwrite(tmp_path / "n.tif", np.zeros((8, 8), np.uint8))
    assert package_pixel_size(None, tmp_path / "n.tif", "m.pt") is None
    # the bundled model's training data wins over a sample's size
    assert package_pixel_size(None, tmp_path / "s.tif", None).unit == "nm"
    with pytest.raises(BiounetError, match="--pixel-size 4pt: unknown unit"):
        package_pixel_size("4pt")


def test_test_tensors_are_the_models_probabilities(package):
    model, folder = package
    rdf = _rdf(folder / "m.zip")
    with zipfile.ZipFile(folder / "m.zip") as zf:
        x = np.load(zf.open(rdf["inputs"][0]["test_tensor"]["source"]))
        y = np.load(zf.open(rdf["outputs"][0]["test_tensor"]["source"]))
    assert x.shape == (1, 1, 316, 316) and y.shape == (1, 2, 132, 132)
    with torch.no_grad():
        ref = torch.softmax(model(torch.from_numpy((x - 10.0) / 240.0)), dim=1).numpy()
    np.testing.assert_allclose(y, ref, atol=1e-6, rtol=0)


def test_load_model_reads_the_package(package, tmp_path):
    model, folder = package
    for path in (folder / "m.zip",):
        loaded = load_model(path)
        assert loaded.config == model.config and loaded.normalization == model.normalization
        for a, b in zip(loaded.state_dict().values(), model.state_dict().values(), strict=True):
            assert torch.equal(a, b)
    image = sample_image()[:200, :220]
    tifffile.imwrite(tmp_path / "in.tif", image)
    r = CliRunner().invoke(
        main,
        ["predict", str(tmp_path / "in.tif"), "-o", str(tmp_path / "p.tif"), "--model",
         str(folder / "m.zip"), "--kind", "probabilities", "--device", "cpu"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    np.testing.assert_allclose(
        tifffile.imread(tmp_path / "p.tif"), predict(image, model)[0, 1], atol=1e-6, rtol=0
    )


@pytest.mark.parametrize(
    "members, message",
    [
        (
            {"rdf.yaml": "type: model\nname: not ours\n"},
            "p.zip: a bioimage.io package, but not one",
        ),
        ({"readme.txt": "hello"}, "p.zip: not a bioimage.io package"),
    ],
)
def test_foreign_zips_are_one_line_errors(tmp_path, members, message):
    with zipfile.ZipFile(tmp_path / "p.zip", "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    with pytest.raises(BiounetError, match=message):
        load_model(tmp_path / "p.zip")


def test_a_missing_package_and_a_small_sample_are_one_line_errors(tmp_path):
    with pytest.raises(BiounetError, match="no such file"):
        load_model(tmp_path / "missing.zip")
    model = UNet(UNetConfig(features=4))
    with pytest.raises(BiounetError, match="need a 2-D image of at least 316x316"):
        export_bioimageio(model, tmp_path / "x.zip", sample=np.zeros((100, 100), np.uint8))


def test_bioimageio_test_passes(package):
    """What `bioimageio test m.zip` runs: reproduce the test outputs with both weight formats."""
    from bioimageio.core import test_model

    _, folder = package
    with warnings.catch_warnings():
        # torch 2.13 deprecates torch.jit.load, which bioimageio.core uses for torchscript
        warnings.filterwarnings("ignore", ".*torch.jit", DeprecationWarning)
        summary = test_model(folder / "m.zip")
    failed = [d.name for d in summary.details if d.status == "failed"]
    assert summary.status == "passed", failed


def _export(*args):
    return CliRunner().invoke(main, ["-q", "export-bioimageio", *map(str, args)])


def _tree(folder):
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_export_never_replaces_or_writes_into_its_own_model(package, tmp_path):
    _, folder = package
    work = tmp_path / "w"
    work.mkdir()
    (work / "m.zip").write_bytes((folder / "m.zip").read_bytes())
    with zipfile.ZipFile(work / "m.zip") as zf:
        zf.extractall(work / "pkg")
    before = _tree(work)
    for model, out, message in (
        (work / "m.zip", work / "m.zip", "is an input of this command"),
        (work / "pkg", work / "pkg", "is an input of this command"),
        (work / "pkg", work / "pkg" / "new.zip", "is inside"),
        (work / "pkg" / "rdf.yaml", work / "pkg", "holds an input of this command"),
    ):
        r = _export("--model", model, "-o", out, "--overwrite")
        assert r.exit_code == 1 and message in r.stderr and r.stderr.count("\n") == 1, r.output
    assert _tree(work) == before


@pytest.mark.parametrize(
    "args,message",
    [
        (["--license", "not-a-licence"], "--license not-a-licence: not an SPDX licence id"),
        (["--name", ""], "--name '': give a name of 1 to 128 characters"),
        (["--name", "x" * 129], "give a name of 1 to 128 characters"),
        (["--author", " "], "--author ' ': an author needs a name"),
    ],
)
def test_export_refuses_bad_descriptions_before_any_work(package, tmp_path, args, message):
    _, folder = package
    r = _export("--model", folder / "m.pt", "-o", tmp_path / "x.zip", *args)
    assert r.exit_code == 1 and r.stderr.startswith("Error: --") and message in r.stderr, r.output
    assert list(tmp_path.iterdir()) == []


def test_export_makes_its_files_beside_the_output_never_in_tmpdir(package, tmp_path, monkeypatch):
    """An export stopped half-way leaves nothing, neither in $TMPDIR nor beside the output."""
    import tempfile

    import bioimageio.spec

    _, folder = package
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read $TMPDIR again
    out = tmp_path / "out"
    out.mkdir()
    seen = []

    def stop(descr, output_path):
        seen.extend(p.name for p in out.iterdir())
        raise KeyboardInterrupt

    monkeypatch.setattr(bioimageio.spec, "save_bioimageio_package", stop)
    r = _export("--model", folder / "m.pt", "-o", out / "m.zip")
    assert r.exit_code == 1 and "interrupted" in r.stderr, r.output
    assert any(n.startswith(".scratch.biounet-tmp-") for n in seen), seen  # made beside the output
    assert list(out.iterdir()) == [] and list(tmpdir.iterdir()) == []
