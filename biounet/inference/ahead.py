"""Compute the next tiles in a background thread while the caller writes the last ones.

The prediction loop is read -> forward pass -> encode -> write, tile after
tile. The forward pass releases the GIL (PyTorch) and so do TIFF and Zarr
compression (zlib, blosc), so :func:`ahead` lets a thread produce tile k+1
(read and forward pass) while the caller compresses and writes tile k.
At most `depth` finished tiles wait in memory.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def ahead(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """Yield `items` in order while a thread computes up to `depth` of them in advance.

    An exception raised while computing an item is raised here, at that
    item. When the consumer stops early (an error, an interrupt, ``close()``)
    the thread stops after the item it is computing.

    Parameters
    ----------
    items : iterable
        Evaluated in the background thread (a generator's body runs there).
    depth : int
        Finished items kept waiting; 0 computes in the caller's thread.

    Examples
    --------
    >>> list(ahead(x * x for x in range(5)))
    [0, 1, 4, 9, 16]
    """
    if depth <= 0:
        yield from items
        return
    done: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                done.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(_Failure(exc))
            return
        put(_DONE)

    thread = threading.Thread(target=work, name="biounet-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = done.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()
