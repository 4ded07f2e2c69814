import os

import pytest
import torch

from biounet import BiounetError, UNet, UNetConfig
from biounet.network.checkpoint import load_checkpoint, save_checkpoint
from biounet.network.normalize import Normalization


def test_round_trip_bit_exact(tmp_path):
    torch.manual_seed(0)
    net = UNet(UNetConfig(features=4, flavour="release"), Normalization("fixed", 10, 200)).eval()
    path = save_checkpoint(tmp_path / "m.pt", net, step=7)
    back = UNet.from_checkpoint(path)
    assert back.config == net.config
    assert back.normalization == Normalization("fixed", 10, 200)
    assert not back.training
    x = torch.rand(2, 1, 188, 204)
    with torch.no_grad():
        assert torch.equal(net(x), back(x))
    assert load_checkpoint(path)["step"] == 7
    assert not list(tmp_path.glob(".*partial*"))


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(BiounetError, match="no such checkpoint"):
        UNet.from_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(BiounetError, match=r"bad.pt: not a readable biounet checkpoint"):
        UNet.from_checkpoint(bad)
    net = UNet(UNetConfig(features=2))
    good = save_checkpoint(tmp_path / "good.pt", net)
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(BiounetError, match="trunc.pt: not a readable"):
        UNet.from_checkpoint(trunc)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(BiounetError, match="other.pt: not a biounet checkpoint"):
        UNet.from_checkpoint(tmp_path / "other.pt")


def test_code_in_file_is_not_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (exec, ("open('pwned', 'w').write('x')",))

    torch.save({"format": "biounet-checkpoint", "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(BiounetError, match="not a readable"):
        UNet.from_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


def test_architecture_mismatch(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", UNet(UNetConfig(features=4)))
    ckpt = torch.load(path, weights_only=True)
    ckpt["model_config"]["features"] = 8
    torch.save(ckpt, tmp_path / "mismatch.pt")
    with pytest.raises(BiounetError, match=r"mismatch.pt: weights do not fit .*size mismatch"):
        UNet.from_checkpoint(tmp_path / "mismatch.pt")
    ckpt["model_config"]["features"] = 4
    ckpt["model_config"]["flavour"] = "release"
    torch.save(ckpt, tmp_path / "flav.pt")
    with pytest.raises(BiounetError, match="weights do not fit"):
        UNet.from_checkpoint(tmp_path / "flav.pt")
    ckpt["model_config"]["colour"] = "red"
    torch.save(ckpt, tmp_path / "field.pt")
    with pytest.raises(BiounetError, match="invalid model description"):
        UNet.from_checkpoint(tmp_path / "field.pt")


def test_half_precision_file_loads_as_float32(tmp_path):
    torch.manual_seed(0)
    net = UNet(UNetConfig(features=4)).eval()
    save_checkpoint(tmp_path / "h.pt", net.half())
    back = UNet.from_checkpoint(tmp_path / "h.pt")
    assert all(p.dtype == torch.float32 for p in back.parameters())
    assert torch.equal(back.down[0][0].weight, net.down[0][0].weight.float())


# -- bioimage.io packages from strangers: confined, bounded, verified ---------------------


def _zip_package(path, weights_name="weights.pt", source=None, sha256=None, extra=()):
    """A zipped package like biounet's, with the weights stored under `weights_name`."""
    import hashlib
    import io
    import zipfile

    import yaml

    torch.manual_seed(0)
    buffer = io.BytesIO()
    torch.save(UNet(UNetConfig(features=4, depth=2)).state_dict(), buffer)
    data = buffer.getvalue()
    entry = {"source": source or weights_name}
    if sha256 is not None:
        entry["sha256"] = hashlib.sha256(data).hexdigest() if sha256 == "right" else sha256
    rdf = {
        "config": {"biounet": {"model_config": {"features": 4, "depth": 2}, "normalization": {}}},
        "weights": {"pytorch_state_dict": entry},
        "covers": [{"source": "cover.png"}],
        **dict(extra),
    }
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("rdf.yaml", yaml.safe_dump(rdf))
        zf.writestr(weights_name, data)
    return path, data


def test_a_zipped_package_is_read_from_its_own_members(tmp_path):
    path, _ = _zip_package(tmp_path / "m.zip", sha256="right")
    model = UNet.from_checkpoint(path)
    assert (model.config.features, model.config.depth) == (4, 2)


@pytest.mark.parametrize(
    "source,message",
    [
        ("../weights.pt", "points outside the package"),
        ("sub/../../weights.pt", "points outside the package"),
        ("/etc/passwd", "is an absolute path"),
        ("/dev/zero", "is an absolute path"),
        ("C:/weights.pt", "is an absolute path"),
        ("https://example.org/w.pt", "a remote file"),
        ("gone.pt", "is missing"),
        (".", "points outside the package"),
    ],
)
def test_a_package_never_reads_outside_itself(tmp_path, source, message):
    (tmp_path / "weights.pt").write_bytes(b"a file outside the package")
    path, _ = _zip_package(tmp_path / "m.zip", source=source)
    with pytest.raises(BiounetError, match=message) as info:
        UNet.from_checkpoint(path)
    assert str(info.value).startswith(f"{path}: ")


def test_other_file_references_must_lie_inside_too(tmp_path):
    path, _ = _zip_package(tmp_path / "m.zip", extra={"documentation": "../../README.md"})
    with pytest.raises(BiounetError, match="documentation '../../README.md' points outside"):
        UNet.from_checkpoint(path)


def test_the_sha256_in_the_description_is_checked(tmp_path):
    path, _ = _zip_package(tmp_path / "m.zip", sha256="ab" * 32)
    with pytest.raises(BiounetError, match="do not match the sha256 in the description"):
        UNet.from_checkpoint(path)
    path, _ = _zip_package(tmp_path / "n.zip", sha256="not a digest")
    with pytest.raises(BiounetError, match="is not a sha256"):
        UNet.from_checkpoint(path)


def test_reads_are_bounded(tmp_path, monkeypatch):
    import biounet.network.checkpoint as checkpoint

    path, data = _zip_package(tmp_path / "m.zip")
    monkeypatch.setattr(checkpoint, "MAX_WEIGHTS_BYTES", len(data) - 1)
    with pytest.raises(BiounetError, match=f"holds {len(data):,} bytes, more than the"):
        UNet.from_checkpoint(path)
    monkeypatch.setattr(checkpoint, "MAX_WEIGHTS_BYTES", len(data))
    UNet.from_checkpoint(path)  # exactly at the limit: read


def test_a_folder_package_refuses_links_out_and_device_files(tmp_path):
    import yaml

    folder = tmp_path / "pkg"
    folder.mkdir()
    (tmp_path / "outside.pt").write_bytes(b"x")
    (folder / "link.pt").symlink_to(tmp_path / "outside.pt")
    (folder / "zero.pt").symlink_to("/dev/zero")
    os.mkfifo(folder / "fifo.pt")
    for source, message in (
        ("link.pt", "points outside the package"),
        ("zero.pt", "points outside the package"),
        ("fifo.pt", "is not a regular file"),
    ):
        rdf = {
            "config": {"biounet": {"model_config": {}, "normalization": {}}},
            "weights": {"pytorch_state_dict": {"source": source}},
        }
        (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf))
        with pytest.raises(BiounetError, match=message):
            load_checkpoint(folder)


def test_damaged_archives_and_descriptions_are_one_line(tmp_path):
    import zipfile

    path, data = _zip_package(tmp_path / "m.zip")
    raw = bytearray(path.read_bytes())
    start = raw.index(data[:64])  # the stored weights: flip bytes in their middle
    raw[start + 100 : start + 110] = b"\xff" * 10
    (tmp_path / "crc.zip").write_bytes(bytes(raw))
    with pytest.raises(BiounetError, match=r"crc.zip: a damaged zip archive \(weights"):
        load_checkpoint(tmp_path / "crc.zip")
    (tmp_path / "cut.zip").write_bytes(path.read_bytes()[: len(raw) // 2])
    with pytest.raises(BiounetError, match="cut.zip: a damaged zip archive"):
        load_checkpoint(tmp_path / "cut.zip")
    with zipfile.ZipFile(tmp_path / "latin.zip", "w") as zf:
        zf.writestr("rdf.yaml", "name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(BiounetError, match="the description rdf.yaml is not UTF-8"):
        load_checkpoint(tmp_path / "latin.zip")
    with zipfile.ZipFile(tmp_path / "keys.zip", "w") as zf:
        zf.writestr("rdf.yaml", "config: {biounet: {model_config: 3}}\nweights: 5\n")
    with pytest.raises(BiounetError, match="not one exported by biounet"):
        load_checkpoint(tmp_path / "keys.zip")


def test_a_device_file_is_not_a_checkpoint(tmp_path):
    with pytest.raises(BiounetError, match="/dev/zero: not a regular file"):
        load_checkpoint("/dev/zero")


def test_a_full_disk_while_saving_is_one_line(tmp_path, monkeypatch):
    """torch reports a failed write as RuntimeError; it becomes a WriteError naming the file."""
    import biounet.io.atomic as atomic
    import biounet.network.checkpoint as checkpoint
    from biounet.io.atomic import WriteError

    def full(obj, fh):
        fh.write(b"half")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    monkeypatch.setattr(atomic, "_nearly_full", lambda path: True)
    with pytest.raises(WriteError) as info:
        save_checkpoint(tmp_path / "m.pt", UNet(UNetConfig(features=2, depth=1)))
    assert str(info.value) == (
        f"{tmp_path / 'm.pt'}: no space left on device (free some space, then run again)"
    )
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(checkpoint.torch, "save", lambda obj, fh: (_ for _ in ()).throw(
        RuntimeError("something else")))  # fmt: skip
    with pytest.raises(RuntimeError, match="something else"):  # not a write failure: as it is
        save_checkpoint(tmp_path / "m.pt", UNet(UNetConfig(features=2, depth=1)))


def test_a_real_full_disk_while_saving(tmp_path):
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; the patched test covers this")
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        net = UNet(UNetConfig(features=16, depth=2))  # about 1 MB of weights
        with pytest.raises(BiounetError, match="m.pt: no space left on device"):
            save_checkpoint(mnt / "m.pt", net)
        assert list(mnt.iterdir()) == []
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
