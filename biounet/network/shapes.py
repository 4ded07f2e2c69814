"""Size arithmetic of the U-Net, derived by walking the architecture.

Ronneberger et al. (2015), Sec. 2: every level applies two unpadded 3x3
convolutions (each removes 2 px per axis) and a 2x2 max pooling, which needs
an even size; the expansive path doubles the size with a 2x2 up-convolution
and again applies two 3x3 convolutions. "To allow a seamless tiling of the
output segmentation map, it is important to select the input tile size such
that all 2x2 max-pooling operations are applied to a layer with an even x-
and y-size."

Nothing here is a lookup table: :func:`trace` follows the layers for a given
size and everything else (valid sizes, halo, crop offsets) is derived from it.
For the paper's network (depth 4) the valid input sizes are 188, 204, ...,
572, ... (``s % 16 == 12``) and the output is ``s - 184``: a halo of 92 px.

With ``padding="same"`` the convolutions are zero-padded, the output has the
input's size, and the input must be a multiple of ``2**depth``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Padding = Literal["valid", "same"]

#: Pixels one unpadded 3x3 convolution removes per axis.
CONV_SHRINK = 2
#: Convolutions per level, in both paths.
CONVS_PER_LEVEL = 2


@dataclass(frozen=True)
class SizeTrace:
    """Per-level spatial sizes of one forward pass (one axis).

    Attributes
    ----------
    input : int
        Input size.
    encoder : tuple of int
        Size after the two convolutions of each contracting level 0..depth-1
        (before pooling). For 572: (568, 280, 136, 64).
    bottom : int
        Size after the two convolutions of the bottom level. For 572: 28.
    upsampled : tuple of int
        Size after each up-convolution, deepest first. For 572: (56, 104, 200, 392).
    decoder : tuple of int
        Size after the two convolutions of each expansive level, deepest
        first. For 572: (52, 100, 196, 388).
    crops : tuple of int
        Pixels cropped per side from each skip connection, deepest first.
        For 572: (4, 16, 40, 88).
    output : int
        Output size. For 572: 388.
    """

    input: int
    encoder: tuple[int, ...]
    bottom: int
    upsampled: tuple[int, ...]
    decoder: tuple[int, ...]
    crops: tuple[int, ...]
    output: int


def _check_args(depth: int, padding: str) -> None:
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    if padding not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")


def _walk(size: int, depth: int, padding: Padding) -> SizeTrace | str:
    """Follow one axis through the network; return the trace or why it fails."""
    shrink = CONVS_PER_LEVEL * CONV_SHRINK if padding == "valid" else 0
    s = size
    encoder = []
    for level in range(depth):
        s -= shrink
        if s < 2:
            return f"level {level} shrinks to {s} px before pooling"
        if s % 2:
            return f"level {level} would max-pool an odd size ({s} px)"
        encoder.append(s)
        s //= 2
    s -= shrink
    if s < 1:
        return f"the bottom level shrinks to {s} px"
    bottom = s
    upsampled, decoder, crops = [], [], []
    for level in reversed(range(depth)):
        s *= 2
        upsampled.append(s)
        crops.append((encoder[level] - s) // 2)
        s -= shrink
        if s < 1:
            return f"expansive level {level} shrinks to {s} px"
        decoder.append(s)
    return SizeTrace(
        size, tuple(encoder), bottom, tuple(upsampled), tuple(decoder), tuple(crops), s
    )


def is_valid_input_size(size: int, *, depth: int = 4, padding: Padding = "valid") -> bool:
    """Whether `size` passes through the network (every pooled size even, output >= 1).

    Examples
    --------
    >>> is_valid_input_size(572), is_valid_input_size(571), is_valid_input_size(574)
    (True, False, False)
    """
    _check_args(depth, padding)
    return size >= 1 and not isinstance(_walk(size, depth, padding), str)


def smallest_valid_input_size(*, depth: int = 4, padding: Padding = "valid") -> int:
    """The smallest input size the network accepts (188 for the paper's network).

    Examples
    --------
    >>> smallest_valid_input_size(), smallest_valid_input_size(padding="same")
    (188, 16)
    """
    _check_args(depth, padding)
    size = 1
    while not is_valid_input_size(size, depth=depth, padding=padding):
        size += 1
    return size


def size_step(depth: int = 4) -> int:
    """Spacing of valid input sizes, ``2**depth``: one pixel at the bottom level."""
    return 2**depth


def valid_input_sizes(stop: int, *, depth: int = 4, padding: Padding = "valid") -> list[int]:
    """All valid input sizes up to and including `stop`.

    Valid sizes form an arithmetic progression with step ``2**depth`` that
    starts at :func:`smallest_valid_input_size`.

    Examples
    --------
    >>> valid_input_sizes(250)
    [188, 204, 220, 236]
    """
    first = smallest_valid_input_size(depth=depth, padding=padding)
    return list(range(first, stop + 1, size_step(depth)))


def nearest_valid_input_sizes(
    size: int, *, depth: int = 4, padding: Padding = "valid"
) -> tuple[int | None, int]:
    """The nearest valid sizes at or below and at or above `size`.

    Returns
    -------
    lower : int or None
        Largest valid size ``<= size``; None below the smallest valid size.
    upper : int
        Smallest valid size ``>= size``.

    Examples
    --------
    >>> nearest_valid_input_sizes(571)
    (556, 572)
    >>> nearest_valid_input_sizes(100)
    (None, 188)
    """
    first = smallest_valid_input_size(depth=depth, padding=padding)
    step = size_step(depth)
    if size < first:
        return None, first
    lower = first + (size - first) // step * step
    upper = lower if lower == size else lower + step
    return lower, upper


def _invalid_size_message(size: int, depth: int, padding: Padding, reason: str) -> str:
    lower, upper = nearest_valid_input_sizes(size, depth=depth, padding=padding)
    what = f"{size} is not a valid input size for a depth-{depth} '{padding}' U-Net ({reason})"
    if lower is None:
        return f"{what}; the smallest valid size is {upper}"
    return f"{what}; the nearest valid sizes are {lower} and {upper}"


def trace(size: int, *, depth: int = 4, padding: Padding = "valid") -> SizeTrace:
    """Sizes of every level for an input of `size` pixels (one axis).

    Raises
    ------
    ValueError
        If `size` is not valid; the message names the two nearest valid sizes.

    Examples
    --------
    >>> t = trace(572)
    >>> t.encoder, t.bottom, t.decoder, t.output
    ((568, 280, 136, 64), 28, (52, 100, 196, 388), 388)
    """
    _check_args(depth, padding)
    result = _walk(size, depth, padding)
    if isinstance(result, str):
        raise ValueError(_invalid_size_message(size, depth, padding, result))
    return result


def output_size(size: int, *, depth: int = 4, padding: Padding = "valid") -> int:
    """Output size for an input of `size` pixels.

    Examples
    --------
    >>> output_size(572), output_size(188), output_size(512, padding="same")
    (388, 4, 512)
    """
    return trace(size, depth=depth, padding=padding).output


def halo(*, depth: int = 4, padding: Padding = "valid") -> int:
    """Context the network needs on each side of an output pixel.

    For ``valid`` padding this is ``(input - output) / 2``, the same for every
    valid size (92 px at depth 4). For ``same`` padding it is the radius of
    the receptive field (:func:`receptive_field_radius`): the context a
    tile needs so that the zero padding at its border cannot reach the pixels
    it keeps.

    Examples
    --------
    >>> halo(), halo(depth=2)
    (92, 20)
    """
    _check_args(depth, padding)
    if padding == "same":
        return receptive_field_radius(depth=depth)
    first = smallest_valid_input_size(depth=depth, padding="valid")
    return (first - output_size(first, depth=depth)) // 2


def receptive_field_radius(*, depth: int = 4) -> int:
    """Largest distance from an output pixel to an input pixel that affects it.

    Each 3x3 convolution at level ``l`` reaches ``2**l`` px further; each 2x2
    pooling at level ``l`` reaches ``2**l`` px further on one side, and each
    up-convolution to level ``l`` by up to ``2**l`` px on the other side. The
    bound is the convolution reach plus the larger of the two one-sided
    terms, ``2**depth - 1``. The tests confirm it against input gradients.

    Examples
    --------
    >>> receptive_field_radius()
    107
    """
    _check_args(depth, "valid")
    conv_reach = sum(CONVS_PER_LEVEL * 2**level for level in range(depth)) * 2
    conv_reach += CONVS_PER_LEVEL * 2**depth
    return conv_reach + 2**depth - 1


def input_size_for_output(out: int, *, depth: int = 4, padding: Padding = "valid") -> int:
    """Smallest valid input size whose output covers `out` pixels.

    Output sizes grow by exactly one step per step of valid input sizes, so
    the answer is found without search.

    Examples
    --------
    >>> input_size_for_output(388), input_size_for_output(512)
    (572, 700)
    """
    first = smallest_valid_input_size(depth=depth, padding=padding)
    missing = out - output_size(first, depth=depth, padding=padding)
    step = size_step(depth)
    return first + max(0, -(-missing // step)) * step
