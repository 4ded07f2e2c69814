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
