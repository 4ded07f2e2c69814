"""Dask prediction equals single-process prediction, also when a worker dies."""

import os
import signal
import threading
import time

import numpy as np
import pytest
import tifffile
import torch

from biounet.inference import dask as distributed
from biounet.inference.files import segment_file
from biounet.io.write import zarr_level
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


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # same arithmetic as the 1-thread workers: bit-identical
    yield
    torch.set_num_threads(before)


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
    b = distributed.predict_distributed(
        folder / "in.tif",
        folder / f"dist{ext}",
        net,
        client=client,
        threads=1,
        tiles=tiles,
        output=output,
        overwrite=True,
    )
    assert a.tiles == b.tiles and a.objects == b.objects
    if ext == ".tif":
        x, y = tifffile.imread(folder / f"seq{ext}"), tifffile.imread(folder / f"dist{ext}")
    else:
        x = zarr_level(folder / f"seq{ext}")[:]
        y = zarr_level(folder / f"dist{ext}")[:]
    assert x.shape == (2, 150, 170)
    assert np.array_equal(x, y)


def test_killed_worker_is_replaced_and_output_identical(client, setup, one_thread, monkeypatch):
    folder, net = setup
    monkeypatch.setattr(distributed, "BLOCK_TILES", 1)  # 2 planes x 10 x 11 = 220 small tasks
    tiles, output = TileOptions(window=132), OutputOptions(kind="probabilities")
    segment_file(
        folder / "in.tif", folder / "ref.tif", net, tiles=tiles, output=output, overwrite=True
    )
    pids = client.run(os.getpid)
    victim = next(iter(pids.values()))
    killed = threading.Event()
    done = threading.Event()

    def kill():  # once a few blocks are in the store, while the rest are being computed
        while not done.is_set():
            chunks = [
                p
                for p in folder.glob(".scratch.biounet-tmp-*/result.zarr/**/*")
                if p.is_file() and not p.name.startswith(".") and p.name != "zarr.json"
            ]
            if len(chunks) >= 6:
                os.kill(victim, signal.SIGKILL)
                killed.set()
                return
            time.sleep(0.02)

    threading.Thread(target=kill, daemon=True).start()
    distributed.predict_distributed(
        folder / "in.tif",
        folder / "dist.tif",
        net,
        client=client,
        threads=1,
        tiles=tiles,
        output=output,
        overwrite=True,
    )
    done.set()
    assert killed.is_set(), "the run ended before the worker was killed: make it longer"
    client.wait_for_workers(2, timeout=60)
    assert victim not in client.run(os.getpid).values()
    assert np.array_equal(tifffile.imread(folder / "ref.tif"), tifffile.imread(folder / "dist.tif"))
