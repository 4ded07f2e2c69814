"""napari layers <-> the library: the axes of a layer's array and the transform outputs inherit.

Functions here take plain values (an array, ``rgb``, a layer's attributes), so
they run and are tested without a viewer.
"""

from __future__ import annotations

from typing import Any

from biounet.errors import BiounetError

#: Letters for plane axes beyond Z and T (anything but the channel and image axes C, S, Y, X).
_MORE_PLANE_LETTERS = "ABDEFGHIJKLMNOPQRUVW"

#: The layer attributes an output layer copies from its input, so that it overlays it.
TRANSFORM_ATTRIBUTES = ("scale", "translate", "rotate", "shear", "units", "axis_labels")


def plane_letters(n: int) -> str:
    """Names of `n` leading plane axes: ``""``, ``"Z"``, ``"TZ"``, then more letters.

    Examples
    --------
    >>> [plane_letters(n) for n in range(4)]
    ['', 'Z', 'TZ', 'WTZ']
    """
    if n <= 2:
        return "TZ"[2 - n :]
    return _MORE_PLANE_LETTERS[len(_MORE_PLANE_LETTERS) - (n - 2) :] + "TZ"


def image_axes(shape: tuple[int, ...], *, rgb: bool, channels: int, name: str) -> str:
    """The axes string under which :func:`biounet.segment` reads a napari image layer's array.

    The last two axes (three for an RGB layer) are the image; every axis before
    them is a plane axis, segmented plane by plane (a Z stack is ``"ZYX"``).

    Parameters
    ----------
    shape : tuple of int
        The layer's array shape.
    rgb : bool
        Whether napari shows the last axis as colour (``layer.rgb``).
    channels : int
        Input channels of the model.
    name : str
        The layer's name, for messages.

    Returns
    -------
    str

    Raises
    ------
    BiounetError
        If the image's channels do not fit the model (e.g. an RGB image and a
        one-channel model), with what to do instead.

    Examples
    --------
    >>> image_axes((3, 64, 64), rgb=False, channels=1, name="stack")
    'ZYX'
    >>> image_axes((64, 64, 3), rgb=False, channels=1, name="thin")
    'ZYX'
    >>> image_axes((64, 64, 3), rgb=True, channels=3, name="photo")
    'YXC'
    """
    image_ndim = 3 if rgb else 2
    if len(shape) < image_ndim:
        raise BiounetError(f"{name}: a {len(shape)}-D layer is not an image")
    if rgb:
        found = shape[-1]
        if found != channels:
            kind = "RGBA" if found == 4 else "RGB"
            raise BiounetError(
                f"{name}: {kind} image with {found} channels, but the model expects {channels} "
                "channel(s); convert it to greyscale first (e.g. "
                "skimage.color.rgb2gray, or split the channels with Layers > Split RGB)"
            )
        return plane_letters(len(shape) - 3) + "YXC"
    if channels != 1:
        raise BiounetError(
            f"{name}: the model expects {channels} channels, but a grey-value layer has one; "
            "give it an RGB layer of that many channels"
        )
    return plane_letters(len(shape) - 2) + "YX"


def full_resolution(data: Any, multiscale: bool) -> Any:
    """The array to segment: the layer's data, or its first (largest) level if multiscale."""
    return data[0] if multiscale else data


def transform_of(layer: Any) -> dict[str, Any]:
    """Keyword arguments that place a new layer where `layer` is in the world.

    Parameters
    ----------
    layer : napari.layers.Layer
        Its transforms never include an RGB axis, so they fit a labels layer
        of the image's plane shape.

    Returns
    -------
    dict
        ``scale``, ``translate``, ``rotate``, ``shear``, ``units``,
        ``axis_labels`` and ``affine`` (as a matrix).
    """
    out = {name: getattr(layer, name) for name in TRANSFORM_ATTRIBUTES}
    out["affine"] = layer.affine.affine_matrix
    return out


#: The metadata key that marks the layers biounet's widgets add (``{"biounet": "weight map"}``).
OUTPUT_KEY = "biounet"


def output_metadata(kind: str) -> dict[str, str]:
    """Metadata of a layer a widget adds: it marks it as biounet's result, not an input.

    Examples
    --------
    >>> output_metadata("weight map")
    {'biounet': 'weight map'}
    """
    return {OUTPUT_KEY: kind}


def is_output(metadata: Any) -> bool:
    """Whether a layer's metadata marks it as a biounet result (a weight map, probabilities)."""
    return isinstance(metadata, dict) and OUTPUT_KEY in metadata


def choose_layer(candidates: list[Any], active: Any, current: Any) -> Any:
    """The layer a widget works on: the selected one if it is a candidate, else its choice so far.

    Parameters
    ----------
    candidates : list
        The layers the widget can work on (e.g. the image layers that are not
        biounet results), in layer-list order, bottom first.
    active : layer or None
        The layer selected in the layer list.
    current : layer or None
        The widget's choice so far.

    Returns
    -------
    layer or None
        `active` if it is a candidate; else `current` if it still is one;
        else the top-most candidate; None without candidates. Selecting a
        layer of another kind (labels, a weight map) keeps the choice.

    Examples
    --------
    >>> choose_layer(["a", "b"], "labels", None), choose_layer(["a", "b"], "a", "b")
    ('b', 'a')
    >>> choose_layer(["a", "b"], "labels", "a"), choose_layer([], "labels", "a") is None
    ('a', True)
    """
    if any(active is c for c in candidates):
        return active
    if any(current is c for c in candidates):
        return current
    return candidates[-1] if candidates else None


def put_layer(viewer: Any, layer: Any) -> Any:
    """Add `layer` to `viewer`, in place of a layer of the same name if there is one.

    Running a widget again on the same input replaces its earlier result
    at the same position in the layer list, instead of piling up copies.
    """
    layers = viewer.layers
    if layer.name in layers:
        index = layers.index(layers[layer.name])
        layers.pop(index)
        layers.insert(index, layer)
    else:
        layers.append(layer)
    return layer


def follow_layers(viewer: Any, widget: Any, on_active: Any) -> None:
    """Keep `widget`'s layer choices current and call `on_active` when the selection moves.

    Parameters
    ----------
    viewer : napari.Viewer
    widget : magicgui Container
        Its ``reset_choices`` refreshes the layer dropdowns.
    on_active : callable
        Called with the selection event, when layers are added or removed, and
        once now (without an event).
    """
    events = viewer.layers.events
    for event in (events.inserted, events.removed, events.reordered):
        event.connect(widget.reset_choices)
    for event in (events.inserted, events.removed):
        event.connect(on_active)
    viewer.layers.selection.events.active.connect(on_active)
    widget.reset_choices()
    on_active()
