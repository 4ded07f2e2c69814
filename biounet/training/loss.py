"""The energy function of the paper (Ronneberger et al. 2015, Sec. 3, Eq. 1).

"The energy function is computed by a pixel-wise soft-max over the final
feature map combined with the cross entropy loss function":
``E = sum_x w(x) log(p_l(x)(x))``. The paper prints E without the minus sign
(it is maximised); biounet minimises ``-sum_x w(x) log p_l(x)(x)`` and divides
by the number of pixels, as Caffe's ``SoftmaxWithLoss`` does (PAPER.md
ambiguity 1). Dividing by the pixel count rather than by ``sum w`` keeps the
gradient scale tied to the weight map, which interacts with the learning rate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def weighted_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Pixel-wise softmax cross-entropy weighted by a weight map, mean over pixels.

    Parameters
    ----------
    logits : Tensor of shape (N, K, H, W)
        Class scores of the network's output region.
    target : Tensor of shape (N, H, W), int64
        Class of each pixel, ``0 <= target < K``.
    weights : Tensor of shape (N, H, W), optional
        The weight map w(x) (Eq. 2); all ones if omitted.

    Returns
    -------
    Tensor, scalar
        ``-sum_x w(x) log p_target(x)(x) / (N * H * W)``.

    Examples
    --------
    >>> logits = torch.zeros(1, 2, 1, 2)
    >>> float(weighted_cross_entropy(logits, torch.tensor([[[0, 1]]])))  # log 2
    0.6931471824645996
    """
    if logits.shape[-2:] != target.shape[-2:]:
        raise ValueError(
            f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ "
            "in size: crop the target to the output region"
        )
    nll = F.cross_entropy(logits.float(), target, reduction="none")
    if weights is not None:
        nll = nll * weights
    return nll.mean()
