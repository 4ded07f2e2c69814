"""A printable description of the architecture for one input size."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from biounet.network import shapes
from biounet.network.unet import UNetConfig, load_model, parameter_count


def layer_counts(config: UNetConfig) -> dict[str, int]:
    """Convolutional layers by kind: 3x3, up-convolutions and 1x1 (23 in the paper).

    Examples
    --------
    >>> layer_counts(UNetConfig())
    {'conv3x3': 18, 'upconv': 4, 'conv1x1': 1, 'total': 23}
    """
    conv3 = 2 * (2 * config.depth + 1)
    counts = {"conv3x3": conv3, "upconv": config.depth, "conv1x1": 1}
    counts["total"] = sum(counts.values())
    return counts


def forward_flops(config: UNetConfig, size: int | tuple[int, int]) -> int:
    """Floating-point operations (2 per multiply-add) of one forward pass.

    Counts the convolutions, up-convolutions and the 1x1 head, which carry
    all but a negligible part of the work; ReLU, pooling and copies are left
    out.

    Parameters
    ----------
    config : UNetConfig
    size : int or (int, int)
        Input size (rows, columns); must be valid.

    Examples
    --------
    >>> round(forward_flops(UNetConfig(), 572) / 1e9, 1)
    300.9
    """
    rows, cols = (size, size) if isinstance(size, int) else size
    ty = shapes.trace(rows, depth=config.depth, padding=config.padding)
    tx = shapes.trace(cols, depth=config.depth, padding=config.padding)
    same = config.padding == "same"
    macs = 0

    def conv_pair(cin: int, cout: int, out_y: int, out_x: int) -> int:
        first_y, first_x = (out_y, out_x) if same else (out_y + 2, out_x + 2)
        return first_y * first_x * cin * cout * 9 + out_y * out_x * cout * cout * 9

    for level in range(config.depth):
        cin = config.in_channels if level == 0 else config.channels(level - 1)
        macs += conv_pair(cin, config.channels(level), ty.encoder[level], tx.encoder[level])
    d = config.depth
    macs += conv_pair(config.channels(d - 1), config.channels(d), ty.bottom, tx.bottom)
    for i, level in enumerate(reversed(range(d))):
        up = config.upconv_channels(level)
        macs += ty.upsampled[i] * tx.upsampled[i] * config.channels(level + 1) * up
        macs += conv_pair(
            up + config.channels(level), config.channels(level), ty.decoder[i], tx.decoder[i]
        )
    macs += ty.output * tx.output * config.channels(0) * config.n_classes
    return 2 * macs


def summary_config(
    model: str | Path | None = None, *, paper: bool = False, **changes: Any
) -> tuple[UNetConfig, str]:
    """The network ``biounet summary`` describes, and its name for the title line.

    Parameters
    ----------
    model : str or Path, optional
        A checkpoint or bioimage.io package: its network. Default: the bundled
        model (what ``biounet predict`` uses without ``--model``).
    paper : bool
        The paper's network instead (:class:`UNetConfig`'s defaults: 64 features).
    **changes
        :class:`UNetConfig` fields to change (``features=8``); None values are ignored.

    Returns
    -------
    config : UNetConfig
    name : str
        E.g. ``"the bundled model"``, ``"the paper's network, --features 8"``.

    Raises
    ------
    ValueError
        If both `model` and `paper` are given, or a change makes an invalid network.
    """
    if paper and model is not None:
        raise ValueError("--paper and --model: choose one network")
    if paper:
        config, name = UNetConfig(), "the paper's network"
    elif model is None:
        config, name = load_model().config, "the bundled model"
    else:
        config, name = load_model(model).config, str(model)
    changes = {key: value for key, value in changes.items() if value is not None}
    if changes:
        config = replace(config, **changes)
        options = {"n_classes": "classes"}
        name += ", " + ", ".join(
            f"--{options.get(k, k).replace('_', '-')} {v}" for k, v in changes.items()
        )
    return config, name


def architecture_table(config: UNetConfig, input_size: int, name: str | None = None) -> str:
    """Per-level channels and sizes, parameters, halo and nearest valid sizes.

    Parameters
    ----------
    config : UNetConfig
    input_size : int
        Square input tile size; must be valid for `config`.
    name : str, optional
        What the network is (e.g. ``"the bundled model"``), prefixed to the title line.

    Raises
    ------
    ValueError
        If `input_size` is invalid (the message names the nearest valid sizes).
    """
    t = shapes.trace(input_size, depth=config.depth, padding=config.padding)
    d = config.depth
    rows = [("level", "path", "channels", "size (px)", "note")]
    rows.append(("", "input", str(config.in_channels), str(input_size), ""))
    for level, size in enumerate(t.encoder):
        rows.append(
            (
                str(level),
                "contracting",
                str(config.channels(level)),
                str(size),
                "dropout" if level == d - 1 and config.dropout else "",
            )
        )
    rows.append(
        (
            str(d),
            "bottom",
            str(config.channels(d)),
            str(t.bottom),
            "dropout" if config.dropout else "",
        )
    )
    for i, level in enumerate(reversed(range(d))):
        note = f"up-conv {config.upconv_channels(level)} ch to {t.upsampled[i]}"
        if config.padding == "valid":
            note += f", skip cropped {t.crops[i]} px/side"
        rows.append((str(level), "expansive", str(config.channels(level)), str(t.decoder[i]), note))
    rows.append(("", "1x1 conv", str(config.n_classes), str(t.output), "class scores"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [
        (f"{name}: " if name else "")
        + f"U-Net, {config.flavour} flavour, {config.padding} padding: depth {d}, "
        f"{config.features} base features, {config.in_channels} input channel(s), "
        f"{config.n_classes} classes",
        "",
    ]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    counts = layer_counts(config)
    lower, upper = shapes.nearest_valid_input_sizes(input_size - 1, depth=d, padding=config.padding)
    step = shapes.size_step(d)
    nearby = [s for s in (lower, input_size, input_size + step) if s is not None]
    halo = shapes.halo(depth=d, padding=config.padding)
    halo_text = (
        f"{halo} px per side (input {input_size} -> output {t.output})"
        if config.padding == "valid"
        else f"{halo} px per side (receptive-field radius, used as tiling context)"
    )
    lines += [
        "",
        f"convolutional layers: {counts['total']} ({counts['conv3x3']} 3x3, "
        f"{counts['upconv']} 2x2 up-convolutions, {counts['conv1x1']} 1x1)",
        f"parameters: {parameter_count(config):,}",
        f"compute: {forward_flops(config, input_size) / 1e9:.1f} GFLOP per forward pass",
        f"halo: {halo_text}",
        f"valid input sizes: every {step} px from "
        f"{shapes.smallest_valid_input_size(depth=d, padding=config.padding)}; "
        f"near {input_size}: {', '.join(map(str, nearby))}",
    ]
    return "\n".join(lines)
