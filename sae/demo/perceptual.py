"""A perceptual loss for the demo decoder's autoencoder: the tiny CLIP's residual at the SAE's layer.

Pixel losses alone leave small objects soft (a flower loses its petals, a far car its wheels) and
people and the judge then misread them; the CLIP's features are what tells objects apart. This is
the LPIPS idea with the model the world already has. The judge, the project's referee, takes no
part.
"""

from __future__ import annotations

from pathlib import Path

import torch


class ClipFeatures:
    """The tiny CLIP's residual at the SAE's layer, differentiable in the pixels it is given."""

    def __init__(self, clip_dir: Path):
        from sae.backbone import load_backbone
        from sae.demo.clip import MEAN, STD

        self.backbone = load_backbone(str(clip_dir))
        self.backbone.model.requires_grad_(False).eval()
        self.mean = torch.tensor(MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(STD).view(1, 3, 1, 1)

    def __call__(self, unit_images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images [N, 3, 64, 64] (the movq's range) -> residual tokens [N, 1+P, d]."""
        return self.backbone.prefix(((unit_images + 1) / 2 - self.mean) / self.std)


def perceptual_loss(features: ClipFeatures, rec: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared distance of the two images' residual tokens, relative to the target's variance."""
    with torch.no_grad():
        ft = features(target)
    return (features(rec) - ft).pow(2).mean() / ft.var().clamp_min(1e-12)
