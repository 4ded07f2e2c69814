"""Simple points of 2-D binary images with 4-connected foreground, 8-connected background.

A pixel is *simple* when flipping it changes no topology: no component, hole
or background region appears, disappears, splits or merges. For a 4-connected
foreground and an 8-connected background this is a property of the 3x3
neighbourhood: in the neighbourhood without the centre, the foreground
4-components that touch one of the four 4-neighbours number exactly one
(T4 = 1) and the background 8-components number exactly one (T8bar = 1).
The test is tabulated once for the 256 neighbourhoods.

References
----------
.. [1] G. Bertrand, "Simple points, topological numbers and geodesic
       neighborhoods in cubic grids", Pattern Recognit. Lett. 15, 1994.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage as ndi

from biounet.evaluation.proposal import FOUR

#: (row, column) offsets of the 8 neighbours; bit b of a neighbourhood code is OFFSETS[b].
OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def neighbourhood(code: int) -> np.ndarray:
    """The 3x3 bool neighbourhood (centre False) encoded by `code` (0..255).

    Examples
    --------
    >>> neighbourhood(2 + 64).astype(int).tolist()   # north and south
    [[0, 1, 0], [0, 0, 0], [0, 1, 0]]
    """
    nb = np.zeros((3, 3), bool)
    for bit, (dy, dx) in enumerate(OFFSETS):
        nb[1 + dy, 1 + dx] = (code >> bit) & 1
    return nb


@functools.cache
def _simple() -> np.ndarray:
    simple = np.zeros(256, bool)
    four = [(0, 1), (1, 0), (1, 2), (2, 1)]
    for code in range(256):
        nb = neighbourhood(code)
        fg = ndi.label(nb, structure=FOUR)[0]
        t4 = len({fg[p] for p in four} - {0})
        bg = ~nb
        bg[1, 1] = False
        t8 = ndi.label(bg, structure=np.ones((3, 3), bool))[1]
        simple[code] = t4 == 1 and t8 == 1
    simple.flags.writeable = False
    return simple


def simple_point_table() -> np.ndarray:
    """Whether the centre of each 3x3 configuration is simple; (256,) bool.

    Index with the neighbourhood code ``sum(2**b * nb[OFFSETS[b]])``
    (:data:`OFFSETS`); the centre's own value does not matter.

    Examples
    --------
    >>> table = simple_point_table()
    >>> bool(table[0]), bool(table[255]), bool(table[2])   # isolated, interior, end
    (False, False, True)
    >>> bool(table[2 + 64])                                # bridge north-south
    False
    """
    return _simple()


def neighbourhood_codes(mask: np.ndarray) -> np.ndarray:
    """The 8-neighbour code of every pixel of a 2-D mask (outside = 0); (M, N) uint8.

    Examples
    --------
    >>> neighbourhood_codes(np.array([[1, 1]])).tolist()
    [[16, 8]]
    """
    m = np.pad(np.asarray(mask, bool), 1).astype(np.uint8)
    rows, cols = m.shape[0] - 2, m.shape[1] - 2
    code = np.zeros((rows, cols), np.uint8)
    for bit, (dy, dx) in enumerate(OFFSETS):
        code |= m[1 + dy : 1 + dy + rows, 1 + dx : 1 + dx + cols] << bit
    return code
