"""A printable description of the architecture for one input size."""

from __future__ import annotations

from biounet import shapes
from biounet.model import UNetConfig, parameter_count


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


def architecture_table(config: UNetConfig, input_size: int) -> str:
    """Per-level channels and sizes, parameters, halo and nearest valid sizes.

    Parameters
    ----------
    config : UNetConfig
    input_size : int
        Square input tile size; must be valid for `config`.

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
        f"U-Net, {config.flavour} flavour, {config.padding} padding: depth {d}, "
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
        f"halo: {halo_text}",
        f"valid input sizes: every {step} px from "
        f"{shapes.smallest_valid_input_size(depth=d, padding=config.padding)}; "
        f"near {input_size}: {', '.join(map(str, nearby))}",
    ]
    return "\n".join(lines)
