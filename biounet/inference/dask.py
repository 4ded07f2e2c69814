"""Whole-slide prediction on a Dask cluster (``biounet predict --workers/--scheduler``).

A :class:`DaskCluster` is a *probability stream* of the one prediction core
(:mod:`biounet.inference.segmentation`): the image is cut into strips of
whole tiles (one tile row, :data:`BLOCK_TILES` tiles wide), each strip is a
Dask task that opens the input (the path must be readable by the workers,
e.g. on a shared file system) and predicts its tiles with the same
:class:`~biounet.inference.predictor.Predictor` and tile grid as this
process, and the core takes the tiles back in file order. So everything
after the probabilities (output kinds, instance labels, the writers) is the
same code as without Dask, and the result equals the single-process result
exactly. The model is broadcast to the workers once and cached there; a
task applies the output's per-tile encoding before it sends the strip back.
Dask reschedules the tasks of a worker that dies; a rerun task recomputes
its whole strip, so the result is unchanged.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from biounet.device import make_runtime
from biounet.errors import BiounetError, ParameterError
from biounet.inference.predictor import Predictor
from biounet.inference.progress import TileProgress
from biounet.inference.segmentation import Plan, TileData
from biounet.inference.tiling import TileSpec, iter_predictions, tile_grid
from biounet.io.read import ImageSource, open_image
from biounet.limits import threads_per_worker
from biounet.network.checkpoint import checkpoint_dict
from biounet.network.unet import UNet, model_from_checkpoint

#: Output tiles per task: one strip of a tile row, this many tiles wide.
BLOCK_TILES = 16

_CACHE: dict[str, Any] = {}  # per worker process: model token -> Predictor


@dataclass(frozen=True)
class _Job:
    """Everything a task needs besides the model (plain, picklable values)."""

    input: str
    axes: str
    spec: TileSpec
    device: str
    threads: int | None
    tta: str
    batch_size: int
    transform: Callable[[np.ndarray], np.ndarray]


#: glibc settings for the local workers' processes, given before they start. In a
#: process, :func:`biounet.device.reuse_freed_memory` sets the same; in a worker it
#: would come too late, since the task threads already allocate from arenas of
#: their own, where feature maps are mapped and faulted in anew on every pass.
#: (Dask's own default, ``MALLOC_TRIM_THRESHOLD_=65536``, is replaced. Like it, they stay
#: in this process's environment, as Dask's nanny sets them there before it spawns; only
#: processes started later read them.)
WORKER_MALLOC = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
}


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
            "a Dask cluster needs Dask: pip install -e '.[distributed]' in biounet's clone"
        ) from None
    if scheduler:
        try:
            return Client(scheduler, timeout="20s"), None
        except OSError as exc:
            raise BiounetError(f"scheduler {scheduler}: cannot connect ({exc})") from None
    import dask

    key = "distributed.nanny.pre-spawn-environ"
    environ = {**dask.config.get(key, {}), **WORKER_MALLOC}
    with dask.config.set({key: environ}):
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
    return Client(cluster), cluster


class DaskCluster:
    """A Dask client (and the local cluster it started) that predicts files.

    Use :func:`connect` to make one, as a context manager so that a local
    cluster is stopped at the end; :meth:`stream` is the probability stream
    that :func:`~biounet.inference.segmentation.segment_into` and
    :func:`~biounet.inference.files.predict_files` take.

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

    def stream(
        self,
        source: ImageSource,
        model: UNet,
        plan: Plan,
        transform: Callable[[np.ndarray], np.ndarray],
        bar: TileProgress,
    ) -> Iterator[TileData]:
        """The tiles' (transformed) probabilities computed on the cluster, in file order.

        A :class:`~biounet.inference.segmentation.ProbabilityStream`; `source`
        must be a file the workers can read.
        """
        if source.path is None:
            raise BiounetError("<array>: a Dask cluster predicts files, not in-memory arrays")
        job = _Job(
            str(source.path.resolve()),
            source.axes,
            plan.spec,
            self.device,
            self.threads,
            plan.tiles.tta,
            plan.tiles.batch_size,
            transform,
        )
        blob = _scatter(self.client, _model_blob(model))
        blocks = strips(source, plan.spec)
        futures = self.client.map(
            predict_block,
            [blob] * len(blocks),
            [job] * len(blocks),
            *zip(*blocks, strict=True),
            retries=3,
            pure=False,
        )
        try:
            for (plane, _, _), future in zip(blocks, futures, strict=True):
                for rows, cols, data in future.result():
                    bar.update(data.shape[0] * data.shape[1])
                    yield plane, rows, cols, data
        finally:
            self.client.cancel(futures)

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
        raise ParameterError("workers", workers, "must be at least 1")
    client, cluster = start_client(scheduler, workers)
    return DaskCluster(client, cluster, device, threads_per_worker(workers) if workers else None)


def _model_blob(model: UNet) -> dict[str, Any]:
    return {"token": uuid.uuid4().hex, "checkpoint": checkpoint_dict(model)}


def _predictor(blob: dict[str, Any], job: _Job) -> Predictor:
    """Build the model once per worker process and keep it."""
    if blob["token"] not in _CACHE:
        import torch

        if job.threads:
            torch.set_num_threads(job.threads)
        model = model_from_checkpoint(blob["checkpoint"], "the broadcast model")
        _CACHE.clear()
        _CACHE[blob["token"]] = Predictor(model, make_runtime(job.device), tta=job.tta)
    return _CACHE[blob["token"]]


def predict_block(
    blob: dict[str, Any], job: _Job, plane: int, rows: slice, cols: slice
) -> list[tuple[slice, slice, np.ndarray]]:
    """Dask task: the transformed probabilities of every tile of one block, in grid order."""
    predictor = _predictor(blob, job)
    read_spec, predict = predictor.windows(job.spec)
    with open_image(job.input, axes=job.axes) as source:
        shape = (source.height, source.width)
        grid = tile_grid(shape, read_spec, (rows, cols))

        def read(r: slice, c: slice) -> np.ndarray:
            return source.read(plane, r, c)

        tiles = iter_predictions(read, shape, predict, read_spec, grid, batch_size=job.batch_size)
        return [(t.rows, t.cols, job.transform(out)) for t, out in tiles]


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


def strips(source: ImageSource, spec: TileSpec) -> list[tuple[int, slice, slice]]:
    """The tasks' blocks in file order: per plane and tile row, strips of whole tiles."""
    ty, tx = spec.tile
    bx = tx * BLOCK_TILES
    return [
        (p, slice(y, min(y + ty, source.height)), slice(x, min(x + bx, source.width)))
        for p in range(source.n_planes)
        for y in range(0, source.height, ty)
        for x in range(0, source.width, bx)
    ]
