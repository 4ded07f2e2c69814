"""Progress reporting for tile-by-tile work: a tqdm bar, a callable, or nothing.

Library functions take ``progress``: ``False`` (silent), ``True`` (a tqdm bar
showing megapixels per second) or a callable ``progress(done, total)`` called
after every tile, which is what a GUI (a napari widget) or a notebook uses.
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: ``progress(done, total)``, called after every tile.
ProgressCallback = Callable[[int, int], None]
Progress = bool | ProgressCallback | None


class TileProgress:
    """Counts tiles and reports them as `progress` asks.

    Parameters
    ----------
    total : int
        Tiles to come.
    name : str
        Label of the bar.
    progress : bool or callable, optional
        See the module docstring.

    Examples
    --------
    >>> seen = []
    >>> bar = TileProgress(2, "x", lambda done, total: seen.append((done, total)))
    >>> bar.update(100); bar.update(100); bar.close()
    >>> seen
    [(1, 2), (2, 2)]
    """

    def __init__(self, total: int, name: str, progress: Progress) -> None:
        self.total = total
        self.done = 0
        self.pixels = 0
        self.start = time.perf_counter()
        self.callback = progress if callable(progress) else None
        self.bar = None
        if progress is True:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="tile", desc=name, leave=False, dynamic_ncols=True)

    def update(self, pixels: int = 0) -> None:
        """One more tile of `pixels` output pixels is done."""
        self.done += 1
        self.pixels += pixels
        if self.bar is not None:
            rate = self.pixels / 1e6 / max(time.perf_counter() - self.start, 1e-9)
            self.bar.set_postfix_str(f"{rate:.2f} MP/s", refresh=False)
            self.bar.update(1)
        if self.callback is not None:
            self.callback(self.done, self.total)

    def close(self) -> None:
        """Remove the bar."""
        if self.bar is not None:
            self.bar.close()
