"""The U-Net of Ronneberger, Fischer and Brox (MICCAI 2015), Sec. 2 and Fig. 1.

Contracting path: per level two unpadded 3x3 convolutions with ReLU, then
2x2 max pooling with stride 2; the number of channels doubles per level.
Expansive path: a learned 2x2 up-convolution that halves the channels, a
concatenation with the centre-cropped feature map of the contracting path
and two 3x3 convolutions with ReLU. A final 1x1 convolution maps the 64
features to the classes: 23 convolutional layers in total. Dropout (p=0.5)
sits at the end of the contracting path, weights are drawn from
N(0, sqrt(2/N)) with N the fan-in, and there is no batch normalisation.

Two flavours share this code:

``paper``
    The network as the paper describes it: 31,030,658 parameters for one
    input channel and two classes.
``release``
    The authors' released Caffe network (``phseg_v5``): the last
    up-convolution keeps 128 channels (concatenated to 192, then 64),
    31,100,354 parameters.

Both apply a ReLU after each up-convolution (the release does; the paper
is silent; ``upconv_relu=False`` removes it). ``padding="same"`` gives the
zero-padded variant most tutorials use, whose output has the input's size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from biounet.errors import BiounetError
from biounet.network import shapes
from biounet.network.bundled import default_model_path
from biounet.network.checkpoint import load_checkpoint
from biounet.network.decision import DecisionRule
from biounet.network.normalize import Normalization
from biounet.plain import from_plain

Flavour = Literal["paper", "release"]

#: Limits that keep a config (e.g. from a damaged checkpoint) from asking for
#: an impossible network: the paper's is depth 4 with 1024 channels at the bottom.
MAX_DEPTH = 10
MAX_CHANNELS = 2**16


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of a U-Net; saved inside every checkpoint.

    Parameters
    ----------
    in_channels : int
        Input channels (1 for grey-value microscopy).
    n_classes : int
        Output classes K of the pixel-wise softmax (2 in the paper).
    features : int
        Channels of the first level (64 in the paper); level ``l`` has
        ``features * 2**l``.
    depth : int
        Number of max-pooling steps (4 in the paper).
    padding : {'valid', 'same'}
        ``valid``: unpadded convolutions as in the paper (572 -> 388).
        ``same``: zero-padded convolutions, output size = input size.
    dropout : float
        Dropout probability after the last contracting level and the
        bottom level (0.5, "at the end of the contracting path").
    flavour : {'paper', 'release'}
        ``release`` keeps ``2 * features`` channels in the last
        up-convolution, as in the authors' released network.
    upconv_relu : bool
        Apply a ReLU after each up-convolution (as the release does).
    """

    in_channels: int = 1
    n_classes: int = 2
    features: int = 64
    depth: int = 4
    padding: shapes.Padding = "valid"
    dropout: float = 0.5
    flavour: Flavour = "paper"
    upconv_relu: bool = True

    def __post_init__(self) -> None:
        for name in ("in_channels", "n_classes", "features", "depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"UNetConfig.{name} must be a positive integer, got {value!r}")
        if self.n_classes < 2:
            raise ValueError(f"UNetConfig.n_classes must be at least 2, got {self.n_classes}")
        if self.padding not in ("valid", "same"):
            raise ValueError(f"UNetConfig.padding must be 'valid' or 'same', got {self.padding!r}")
        if self.flavour not in ("paper", "release"):
            raise ValueError(
                f"UNetConfig.flavour must be 'paper' or 'release', got {self.flavour!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"UNetConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.depth > MAX_DEPTH:
            raise ValueError(f"UNetConfig.depth must be at most {MAX_DEPTH}, got {self.depth}")
        widest = max(self.in_channels, self.n_classes, self.channels(self.depth))
        if widest > MAX_CHANNELS:
            raise ValueError(
                f"UNetConfig: {widest} channels in one layer (features {self.features}, depth "
                f"{self.depth}); at most {MAX_CHANNELS} are supported"
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> UNetConfig:
        """Build a config from a dict, rejecting unknown keys."""
        return from_plain(cls, values)

    def channels(self, level: int) -> int:
        """Feature channels of contracting level `level` (0 = top)."""
        return self.features * 2**level

    def upconv_channels(self, level: int) -> int:
        """Output channels of the up-convolution into expansive level `level`."""
        if self.flavour == "release" and level == 0:
            return self.channels(1)
        return self.channels(level)

    @property
    def halo(self) -> int:
        """Context per side an output pixel needs (92 px for the paper's network)."""
        return shapes.halo(depth=self.depth, padding=self.padding)

    def output_size(self, size: int) -> int:
        """Output size for input `size`; ValueError naming valid sizes if invalid."""
        return shapes.output_size(size, depth=self.depth, padding=self.padding)


def _double_conv(in_ch: int, out_ch: int, padding: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, 3, padding=padding),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, 3, padding=padding),
        nn.ReLU(inplace=True),
    ]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop the last two axes of `x` to `size` around their centre.

    Parameters
    ----------
    x : Tensor of shape (..., H, W)
    size : (h, w), with ``H - h`` and ``W - w`` even and non-negative.

    Returns
    -------
    Tensor of shape (..., h, w)
    """
    dy = (x.shape[-2] - size[0]) // 2
    dx = (x.shape[-1] - size[1]) // 2
    return x[..., dy : dy + size[0], dx : dx + size[1]]


class UNet(nn.Module):
    """U-Net with crop-and-concat skips (Ronneberger et al. 2015, Fig. 1).

    Parameters
    ----------
    config : UNetConfig, optional
        Architecture; the paper's network by default.
    normalization : Normalization, optional
        How raw images are scaled before they enter the network; saved in
        checkpoints so that prediction matches training.
    decision : DecisionRule, optional
        How its foreground probability becomes masks and objects (calibrated
        by training; saved in checkpoints).

    Examples
    --------
    >>> net = UNet(UNetConfig(features=4)).eval()
    >>> net(torch.zeros(1, 1, 188, 188)).shape
    torch.Size([1, 2, 4, 4])
    """

    def __init__(
        self,
        config: UNetConfig | None = None,
        normalization: Normalization | None = None,
        decision: DecisionRule | None = None,
    ) -> None:
        super().__init__()
        self.config = cfg = config or UNetConfig()
        self.normalization = normalization or Normalization()
        self.decision = decision or DecisionRule()
        pad = 0 if cfg.padding == "valid" else 1
        last = cfg.depth
        self.down = nn.ModuleList(
            _double_conv(
                cfg.in_channels if level == 0 else cfg.channels(level - 1),
                cfg.channels(level),
                pad,
                cfg.dropout if level == last - 1 else 0.0,
            )
            for level in range(cfg.depth)
        )
        self.pool = nn.MaxPool2d(2, 2)
        self.bottom = _double_conv(cfg.channels(last - 1), cfg.channels(last), pad, cfg.dropout)
        # up[level] / dec[level] produce expansive level `level` (0 = top).
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(cfg.channels(level + 1), cfg.upconv_channels(level), 2, stride=2)
            for level in range(cfg.depth)
        )
        self.dec = nn.ModuleList(
            _double_conv(
                cfg.upconv_channels(level) + cfg.channels(level), cfg.channels(level), pad, 0.0
            )
            for level in range(cfg.depth)
        )
        self.head = nn.Conv2d(cfg.channels(0), cfg.n_classes, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw weights from N(0, sqrt(2/N)), N = fan-in; set biases to 0 (Sec. 3).

        ``kaiming_normal_`` computes the fan-in of a ``ConvTranspose2d`` as
        ``out_channels * 4``, like Caffe's ``msra`` filler that the authors
        used (PAPER.md ambiguity 14).
        """
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (logits) for every output pixel.

        Parameters
        ----------
        x : Tensor of shape (N, C, H, W)
            H and W must be valid input sizes (see :mod:`biounet.network.shapes`).

        Returns
        -------
        Tensor of shape (N, K, H', W')
            ``H' = H - 2 * halo`` for ``valid`` padding, ``H`` for ``same``.
        """
        cfg = self.config
        for size in x.shape[-2:]:
            shapes.trace(size, depth=cfg.depth, padding=cfg.padding)  # raises with nearest sizes
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for level in reversed(range(cfg.depth)):
            x = self.up[level](x)
            if cfg.upconv_relu:
                x = torch.relu(x)
            skip = center_crop(skips[level], (x.shape[-2], x.shape[-1]))
            x = self.dec[level](torch.cat([x, skip], dim=1))
        return self.head(x)

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, map_location: str | torch.device = "cpu") -> UNet:
        """Rebuild a model (architecture, weights, normalisation) from a checkpoint file.

        Raises
        ------
        biounet.BiounetError
            If the file is missing, unreadable, not a biounet checkpoint, or
            its weights do not fit its stored architecture.
        """
        return load_model(path, map_location=map_location)

    def extra_repr(self) -> str:
        """Show the config in ``repr(model)``."""
        return ", ".join(f"{k}={v!r}" for k, v in asdict(self.config).items())


def unet_from_config(**config: Any) -> UNet:
    """A :class:`UNet` built from the fields of :class:`UNetConfig` as keyword arguments.

    The architecture callable of biounet's bioimage.io packages (plain
    keyword arguments in the model description; the network returns the
    class scores, the package's postprocessing applies the softmax).

    Examples
    --------
    >>> unet_from_config(features=4, depth=2).config.features
    4
    """
    return UNet(UNetConfig.from_dict(config))


def parameter_count(config: UNetConfig) -> int:
    """Number of trainable parameters, counted without allocating the weights.

    Examples
    --------
    >>> parameter_count(UNetConfig())
    31030658
    """
    with torch.device("meta"):
        net = UNet(config)
    return sum(p.numel() for p in net.parameters())


def model_from_checkpoint(ckpt: dict[str, Any], source: str = "checkpoint") -> UNet:
    """Rebuild a model from the contents of a checkpoint (a plain dict).

    Parameters
    ----------
    ckpt : dict
        With ``model_config``, ``normalization`` and ``model_state``.
    source : str
        Names the origin in error messages (a file path).

    Raises
    ------
    BiounetError
        If the stored architecture is invalid or the weights do not fit it.
    """
    try:
        config = UNetConfig.from_dict(ckpt["model_config"])
        norm = from_plain(Normalization, ckpt["normalization"])
        decision = from_plain(DecisionRule, ckpt.get("decision", {}))
        with torch.device("meta"):
            model = UNet(config, norm, decision)
    except (KeyError, TypeError, ValueError, RuntimeError, OverflowError) as exc:
        reason = one_line_reason(exc)
        raise BiounetError(
            f"{source}: invalid model description in checkpoint ({reason})"
        ) from None
    # compact files may store float16 weights; models always compute in float32
    try:
        state = {
            k: v.float() if v.is_floating_point() else v for k, v in ckpt["model_state"].items()
        }
        model.load_state_dict(state, strict=True, assign=True)
    except (KeyError, RuntimeError, AttributeError, TypeError) as exc:
        raise BiounetError(
            f"{source}: weights do not fit the stored architecture "
            f"({first_mismatch(exc)}); the file was saved by a different model"
        ) from exc
    return model.eval()


def load_model(path: str | Path | None = None, *, map_location: str | torch.device = "cpu") -> UNet:
    """The model in a checkpoint or a bioimage.io package; without `path`, the bundled model.

    `path` is a checkpoint file (``.pt``) or a bioimage.io package exported
    by ``biounet export-bioimageio`` (a ``.zip``, its folder or its
    ``bioimageio.yaml``); without it, the bundled ISBI 2012 model.

    Raises
    ------
    BiounetError
        As :meth:`UNet.from_checkpoint`.
    """
    if path is None:
        path = default_model_path()
    return model_from_checkpoint(load_checkpoint(path, map_location=map_location), str(path))


def one_line_reason(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, at most `limit` characters."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]


def first_mismatch(exc: BaseException) -> str:
    """The first size mismatch or missing/unexpected key in a ``load_state_dict`` error."""
    text = " ".join(str(exc).split())
    for marker in ("size mismatch for", "Missing key(s)", "Unexpected key(s)"):
        if marker in text:
            return text[text.index(marker) :][:160]
    return text[:160]
