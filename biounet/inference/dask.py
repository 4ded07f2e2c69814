"""Whole-slide prediction on a Dask cluster (``biounet predict --workers/--scheduler``).

The output is cut into blocks of whole tiles. Each Dask task opens the input
(the path must be readable by the workers, e.g. on a shared file system),
reads its block plus the halo, runs :func:`biounet.inference.predictor.predict_region`
and writes the block into a chunked zarr store whose chunks are the
tiles, so no two tasks write the same chunk. Because block starts lie on the
tile grid, the result equals the single-process result exactly. The model is
broadcast to the workers once and cached there. Dask reschedules the tasks of
a worker that dies; a rerun task rewrites its whole block, so the result is
unchanged. A TIFF output is assembled from the store at the end, and instance
labels are computed from it block by block, as in the single-process path.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from biounet.device import make_runtime
from biounet.errors import BiounetError
from biounet.inference.files import (
    PredictSummary,
    check_channels,
    check_output,
    file_tiles,
    label_store,
)
from biounet.inference.outputs import (
    encode,
    foreground_probability,
    output_layout,
)
from biounet.inference.predictor import Predictor, predict_region
from biounet.inference.progress import Progress, TileProgress
from biounet.inference.tiling import TileSpec, tile_grid
from biounet.io.atomic import atomic_output, scratch_folder
from biounet.io.read import open_image
from biounet.io.write import Layout, create_zarr, write_ome_zarr, write_tiles, zarr_key
from biounet.network.checkpoint import checkpoint_dict
from biounet.network.unet import UNet, model_from_checkpoint
from biounet.options import OutputOptions, TileOptions

#: Output tiles per block side: a task predicts BLOCK_TILES**2 tiles.
BLOCK_TILES = 4

_CACHE: dict[str, Any] = {}  # per worker process: model token -> Predictor


@dataclass(frozen=True)
class _Job:
    """Everything a task needs besides the model (plain, picklable values)."""

    input: str
    axes: str | None
    spec: TileSpec
    store: str
    layout: Layout
    output: OutputOptions
    device: str
    threads: int | None
    tta: str
    batch_size: int
    foreground_only: bool


def start_client(scheduler: str | None = None, workers: int | None = None) -> tuple[Any, Any]:
    """Connect to a running scheduler, or start a local cluster of `workers` processes.

    Returns
    -------
    client : distributed.Client
    cluster : distributed.LocalCluster or None
        Close it (after the client) when done; None for a remote scheduler.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise BiounetError(
            "--workers/--scheduler need Dask: pip install -e '.[distributed]' in biounet's clone"
        ) from None
    if scheduler:
        try:
            return Client(scheduler, timeout="20s"), None
        except OSError as exc:
            raise BiounetError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    return Client(cluster), cluster


class DaskCluster:
    """A Dask client (and the local cluster it started) that predicts files.

    Use :func:`connect` to make one, as a context manager so that a local
    cluster is stopped at the end; :meth:`segment_file` has the signature of
    :func:`biounet.inference.files.segment_file`, so
    :func:`~biounet.inference.files.predict_files` takes either.

    Parameters
    ----------
    client : distributed.Client
    cluster : distributed.LocalCluster or None
    device : str
        Device spec each worker resolves (``auto``, ``cpu``, ``cuda``).
    threads : int, optional
        torch threads per worker.
    """

    def __init__(self, client: Any, cluster: Any, device: str, threads: int | None) -> None:
        self.client, self.cluster, self.device, self.threads = client, cluster, device, threads

    @property
    def dashboard_link(self) -> str | None:
        """The Dask dashboard's address, if it has one."""
        return self.client.dashboard_link

    def segment_file(self, input_path, output_path, model, *, runtime=None, **options):
        """:func:`predict_distributed` on this cluster (`runtime` is resolved per worker)."""
        return predict_distributed(
            input_path,
            output_path,
            model,
            client=self.client,
            device=self.device,
            threads=self.threads,
            **options,
        )

    def close(self) -> None:
        """Close the client, then the local cluster if this process started one."""
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def __enter__(self) -> DaskCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(
    scheduler: str | None = None, workers: int | None = None, device: str = "auto"
) -> DaskCluster:
    """Connect to `scheduler`, or start a local cluster of `workers` processes.

    Raises
    ------
    BiounetError
        Dask missing, an unreachable scheduler, or fewer than one worker.
    """
    if workers is not None and workers < 1:
        raise BiounetError(f"--workers {workers}: must be at least 1")
    client, cluster = start_client(scheduler, workers)
    return DaskCluster(client, cluster, device, local_threads(workers) if workers else None)


def _model_blob(model: UNet) -> dict[str, Any]:
    return {"token": uuid.uuid4().hex, "checkpoint": checkpoint_dict(model)}


def _predictor(blob: dict[str, Any], job: _Job) -> Any:
    """Build the model once per worker process and keep it."""
    if blob["token"] not in _CACHE:
        import torch

        if job.threads:
            torch.set_num_threads(job.threads)
        model = model_from_checkpoint(blob["checkpoint"], "the broadcast model")
        _CACHE.clear()
        _CACHE[blob["token"]] = Predictor(model, make_runtime(job.device), tta=job.tta)
    return _CACHE[blob["token"]]


def predict_block(blob: dict[str, Any], job: _Job, plane: int, rows: slice, cols: slice) -> int:
    """Dask task: predict one block and write it into the store; return its pixel count."""
    import zarr

    predictor = _predictor(blob, job)
    with open_image(job.input, axes=job.axes) as source:
        probs = predict_region(
            source, plane, (rows, cols), predictor, job.spec, batch_size=job.batch_size
        )
    store = zarr.open_array(job.store, mode="r+")
    if job.foreground_only:
        store[plane, rows, cols] = foreground_probability(probs)
    else:
        data = encode(probs, job.output)
        key = zarr_key(job.layout, plane, rows, cols)
        store[key] = np.moveaxis(data, -1, 0) if job.layout.channels > 1 else data
    return probs.shape[-2] * probs.shape[-1]


def _scatter(client: Any, blob: dict[str, Any], attempts: int = 3) -> Any:
    """Send the model to every worker once; retry if a worker leaves meanwhile."""
    for attempt in range(attempts):
        try:
            return client.scatter(blob, broadcast=True)
        except (KeyError, OSError):
            if attempt + 1 == attempts:
                raise
            client.wait_for_workers(1, timeout=60)
    raise AssertionError("unreachable")


def _blocks(layout: Layout, spec: TileSpec) -> list[tuple[int, slice, slice]]:
    by, bx = spec.tile[0] * BLOCK_TILES, spec.tile[1] * BLOCK_TILES
    return [
        (p, slice(y, min(y + by, layout.height)), slice(x, min(x + bx, layout.width)))
        for p in range(int(np.prod(layout.plane_shape, dtype=np.int64)))
        for y in range(0, layout.height, by)
        for x in range(0, layout.width, bx)
    ]


def predict_distributed(
    input_path: str | Path,
    output_path: str | Path,
    model: UNet,
    *,
    client: Any,
    device: str = "cpu",
    threads: int | None = None,
    tiles: TileOptions | None = None,
    output: OutputOptions | None = None,
    axes: str | None = None,
    overwrite: bool = False,
    progress: Progress = False,
) -> PredictSummary:
    """Segment one TIFF with a Dask cluster; the result equals :func:`.files.segment_file`'s.

    Parameters
    ----------
    input_path, output_path, model, tiles, output, axes, overwrite, progress
        As for :func:`biounet.inference.files.segment_file`.
    client : distributed.Client
    device : str
        Device spec resolved on each worker (``cpu``, ``cuda``, ...).
    threads : int, optional
        torch threads per worker (default: torch's own choice).
    """
    from distributed import as_completed

    tiles = tiles or TileOptions()
    output = output or OutputOptions()
    output_path = check_output(output_path, input_path, overwrite=overwrite)
    start = time.perf_counter()
    with open_image(input_path, axes=axes) as source:
        check_channels(source, model)
        spec = file_tiles(source, model, tiles)
        layout = output_layout(source, model.config.n_classes, output)
        planes = source.n_planes
        shape, src_axes = tuple(source.data.shape), source.axes
    labels = output.kind == "labels"
    objects = None
    with scratch_folder(output_path) as scratch:
        with atomic_output(output_path, overwrite=overwrite, inputs=[input_path]) as tmp:
            to_zarr = output_path.suffix.lower() == ".zarr"
            if labels:
                import zarr

                store_path = scratch / "p.zarr"
                zarr.open_array(
                    str(store_path),
                    mode="w",
                    dtype=np.float32,
                    chunks=(1, *spec.tile),
                    shape=(planes, layout.height, layout.width),
                )
            else:
                store_path = scratch / "result.zarr"
                create_zarr(store_path, layout, chunks=spec.tile)
            job = _Job(
                str(Path(input_path).resolve()),
                axes,
                spec,
                str(store_path),
                layout,
                output,
                device,
                threads,
                tiles.tta,
                tiles.batch_size,
                labels,
            )
            blob = _scatter(client, _model_blob(model))
            blocks = _blocks(layout, spec)
            futures = client.map(
                predict_block,
                [blob] * len(blocks),
                [job] * len(blocks),
                *zip(*blocks, strict=True),
                retries=3,
                pure=False,
            )
            bar = TileProgress(len(blocks), Path(input_path).name, progress)  # per block
            try:
                for future in as_completed(futures):
                    bar.update(future.result())
            finally:
                bar.close()
            if labels:
                import zarr

                prob = zarr.open_array(str(store_path), mode="r")
                objects = label_store(tmp, prob, layout, spec, output, scratch)
            elif to_zarr:
                import zarr

                array = zarr.open_array(str(store_path), mode="r")
                write_ome_zarr(tmp, array, layout, chunks=spec.tile)
            else:
                _assemble_tiff(tmp, store_path, layout, spec, output.compression)
    n_tiles = len(tile_grid((layout.height, layout.width), spec)) * planes
    return PredictSummary(
        Path(input_path),
        output_path,
        shape,
        src_axes,
        planes,
        n_tiles,
        spec.window,
        time.perf_counter() - start,
        objects,
    )


def _assemble_tiff(
    tmp: Path, store_path: Path, layout: Layout, spec: TileSpec, compression: str
) -> None:
    """Copy a finished OME-Zarr store into a tiled TIFF, tile by tile, in file order."""
    import zarr

    array = zarr.open_array(str(store_path), mode="r")
    grid = tile_grid((layout.height, layout.width), spec)
    n_planes = int(np.prod(layout.plane_shape, dtype=np.int64))

    def tiles():
        for p in range(n_planes):
            for t in grid:
                block = np.asarray(array[zarr_key(layout, p, t.rows, t.cols)])
                yield (
                    p,
                    t.rows,
                    t.cols,
                    (np.moveaxis(block, 0, -1) if layout.channels > 1 else block),
                )

    write_tiles(tmp, tiles(), layout, spec.tile, compression)


def local_threads(workers: int) -> int:
    """Torch threads per local worker so that workers do not oversubscribe the cores."""
    return max(1, (os.cpu_count() or 1) // workers)
