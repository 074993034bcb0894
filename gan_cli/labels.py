"""Class labels in the game (seed 003: "using labels almost always improves GANs").

A label is a digit's class, or for a Gaussian mixture the component a sample came from.

- model.conditional=true, a conditional GAN (Mirza & Osindero 2014; Denton et al. 2015):
  G is asked for a class, its input z with the label's one-hot code appended, and D
  judges a (sample, label) pair, the one-hot code appended to a vector sample or
  stacked as K constant channels of an image. D rejects a good sample of the wrong class.
- loss.aux_weight=w > 0 as well, AC-GAN (Odena et al. 2017): D no longer sees the label;
  it has K more outputs that guess the class, and both players add w x the
  cross-entropy of that guess against the label (the true one for real samples, the
  one asked for by G for fakes).

The networks stay plain single-input modules: labels join their inputs here, so
packing, spectral norm, replicas and checkpoints work as they do without labels.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

Labels = Optional[torch.Tensor]  # (B,) class indices, (R, B) for replicas; None = unconditional


class Conditioning:
    """How labels enter G's and D's inputs and D's outputs; with n_classes=0 (no
    labels) every method passes its input through unchanged."""

    def __init__(self, n_classes: int = 0, aux_weight: float = 0.0):
        self.n_classes = n_classes
        self.conditional = n_classes > 0
        self.aux_weight = aux_weight if self.conditional else 0.0
        self.to_discriminator = self.conditional and not self.aux_weight

    # widths the builder adds to the networks
    @property
    def generator_extra_inputs(self) -> int:
        return self.n_classes

    @property
    def discriminator_extra_inputs(self) -> int:  # features of a vector, channels of an image
        return self.n_classes if self.to_discriminator else 0

    @property
    def discriminator_extra_outputs(self) -> int:
        return self.n_classes if self.aux_weight else 0

    def generator_input(self, z: torch.Tensor, y: Labels) -> torch.Tensor:
        """(..., z_dim) -> (..., z_dim + K)."""
        if not self.conditional:
            return z
        return torch.cat([z, self._one_hot(y, z.dtype)], dim=-1)

    def discriminator_input(self, x: torch.Tensor, y: Labels, image: bool) -> torch.Tensor:
        """(..., d) -> (..., d + K); images (..., C, H, W) -> (..., C + K, H, W)."""
        if not self.to_discriminator:
            return x
        code = self._one_hot(y, x.dtype)  # (..., K)
        if image:
            code = code[..., None, None].expand(*code.shape, *x.shape[-2:])
            return torch.cat([x, code], dim=-3)
        return torch.cat([x, code], dim=-1)

    def split(self, d_out: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """D's output (..., 1 [+ K]) -> the real/fake logit (..., 1) and, for AC-GAN, the
        class logits (..., K) (None otherwise)."""
        if not self.aux_weight:
            return d_out, None
        return d_out[..., :1], d_out[..., 1:]

    def aux_loss(self, class_logits: Optional[torch.Tensor], y: Labels) -> torch.Tensor | float:
        """aux_weight x the mean cross-entropy of class_logits (..., B, K) against y (..., B):
        a number, or (R,) for replicas (one per replica, like their GAN losses)."""
        if class_logits is None:
            return 0.0
        log_p = F.log_softmax(class_logits, dim=-1)
        return -self.aux_weight * log_p.gather(-1, y.unsqueeze(-1)).squeeze(-1).mean(-1)

    def _one_hot(self, y: Labels, dtype: torch.dtype) -> torch.Tensor:
        if y is None:
            raise ValueError("a conditional network needs labels")
        return F.one_hot(y, self.n_classes).to(dtype)
