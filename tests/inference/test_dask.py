"""Dask prediction equals single-process prediction, also when a worker dies."""

import os
import signal

import numpy as np
import pytest
import tifffile
import torch
from zarr_levels import zarr_level

from biounet.inference import dask as distributed
from biounet.inference.files import predict_files, segment_file
from biounet.network.checkpoint import save_checkpoint
from biounet.network.unet import UNet, UNetConfig
from biounet.options import OutputOptions, TileOptions

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    c, cluster = distributed.start_client(workers=2)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dist")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (2, 150, 170)).astype(np.uint8)
    tifffile.imwrite(folder / "in.tif", image, imagej=True, metadata={"axes": "ZYX"})
    torch.manual_seed(0)
    net = UNet(UNetConfig(features=3, depth=3))
    save_checkpoint(folder / "m.pt", net)
    return folder, UNet.from_checkpoint(folder / "m.pt")


def on_cluster(client, source, target, net, **options):
    """predict_files of one file with the Dask stream of `client`'s cluster."""
    cluster = distributed.DaskCluster(client, None, "cpu", 1)
    return next(predict_files([source], target, net, cluster=cluster, **options))[0]


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # same arithmetic as the 1-thread workers: bit-identical
    yield
    torch.set_num_threads(before)


def test_local_workers_start_with_biounets_malloc_settings(client):
    seen = client.run(lambda: {k: os.environ.get(k) for k in distributed.WORKER_MALLOC})
    assert seen and all(env == distributed.WORKER_MALLOC for env in seen.values())


@pytest.mark.parametrize(
    "kind,ext", [("probabilities", ".tif"), ("probabilities", ".zarr"), ("labels", ".tif")]
)
def test_equals_single_process(client, setup, one_thread, kind, ext, monkeypatch):
    folder, net = setup
    monkeypatch.setattr(distributed, "BLOCK_TILES", 2)
    tiles, output = TileOptions(window=132), OutputOptions(kind=kind)
    a = segment_file(
        folder / "in.tif", folder / f"seq{ext}", net, tiles=tiles, output=output, overwrite=True
    )
    b = on_cluster(
        client,
        folder / "in.tif",
        folder / f"dist{ext}",
        net,
        tiles=tiles,
        output=output,
        overwrite=True,
    )
    assert a.tiles == b.tiles and a.objects == b.objects
    assert a.objects is None or a.objects > 0
    if ext == ".tif":
        x, y = tifffile.imread(folder / f"seq{ext}"), tifffile.imread(folder / f"dist{ext}")
    else:
        x = zarr_level(folder / f"seq{ext}")[:]
        y = zarr_level(folder / f"dist{ext}")[:]
    assert x.shape == (2, 150, 170)
    assert np.array_equal(x, y)


def test_killed_worker_is_replaced_and_output_identical(client, setup, one_thread, monkeypatch):
    folder, net = setup
    monkeypatch.setattr(distributed, "BLOCK_TILES", 1)  # 2 planes x 5 x 6 = 60 one-tile tasks
    tiles, output = TileOptions(window=132), OutputOptions(kind="probabilities")
    segment_file(
        folder / "in.tif", folder / "ref.tif", net, tiles=tiles, output=output, overwrite=True
    )
    pids = client.run(os.getpid)
    victim = next(iter(pids.values()))
    killed = []

    def kill(done, total):  # once a few tiles are back, while the rest are being computed
        if done == 6:
            os.kill(victim, signal.SIGKILL)
            killed.append(total)

    on_cluster(
        client,
        folder / "in.tif",
        folder / "dist.tif",
        net,
        tiles=tiles,
        output=output,
        overwrite=True,
        progress=kill,
    )
    assert killed == [60], "the worker was not killed during the run"
    client.wait_for_workers(2, timeout=60)
    assert victim not in client.run(os.getpid).values()
    assert np.array_equal(tifffile.imread(folder / "ref.tif"), tifffile.imread(folder / "dist.tif"))
