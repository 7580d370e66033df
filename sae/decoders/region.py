"""Repaint only what an edit changes: the edit region, and keeping the input outside it.

Img2img repaints the whole picture, so at a strength high enough for an edit to take, the rest of
the scene drifts too (on the demo decoder at strength 0.9 an *unedited* round trip loses an object
in 31% of scenes). The region is found as DiffEdit finds its mask (Couairon et al. 2022; diffusers'
``StableDiffusionDiffEditPipeline.generate_mask``): noise the input's latents halfway, ask the UNet
for its prediction under the edited and under the unedited embedding, and mark the latent cells
where the two differ by more than half of ``THRESHOLD_RATIO`` times their mean difference. While
denoising, every step puts the input's own latents (noised to the step's level; at the end, exact)
back outside the region, as blended latent diffusion does, so only the region is repainted.

An empty edit has an empty region: the result is the autoencoder's reconstruction of the input.
When every edit is limited to brushed patches, the brushed area (grown like the found region) is
the region instead: the brush says where the picture may change.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

REGIONS = ("edited", "whole")  # repaint where the edit acts / the whole image (plain img2img)
MAPS = 8  # noise draws the difference is averaged over (DiffEdit's default is 10)
ENCODE_STRENGTH = 0.5  # how far the latents are noised to compare predictions (DiffEdit's default)
THRESHOLD_RATIO = 3.0  # DiffEdit's default: a cell is in when its difference exceeds 1.5x the mean
CHUNK_MAPS = 2  # noise maps per UNet pass: the passes between which a render can be cancelled
GROW = 1  # cells the region grows by on each side, so an added object has room around its core


class EditRegion:
    """Finds edit regions. It remembers the UNet's predictions under the unedited embedding for the
    last input: every slider move on one image asks for them again, and they are half the cost."""

    def __init__(self, maps: int = MAPS):
        self.maps = maps
        self.last: tuple[tuple, torch.Tensor] | None = None

    @torch.no_grad()
    def __call__(
        self,
        unet,
        scheduler,
        latents: torch.Tensor,
        edited: torch.Tensor,
        source: torch.Tensor,
        steps: int,
        seed: int,
        poll: Callable[[], None] | None = None,
    ) -> torch.Tensor:
        """[B, 1, h, w] of 0/1: where the UNet's prediction under ``edited`` [B, e] differs from
        the one under ``source`` [B, e], for the input ``latents`` [B, c, h, w]. All zero for a
        scene whose two embeddings are equal (without a UNet pass). ``poll()`` is called between
        passes, so a render can be cancelled there (a pass takes seconds on a CPU at real size)."""
        unedited = ~(source != edited).any(1)
        if bool(unedited.all()):
            return torch.zeros(latents.shape[0], 1, *latents.shape[-2:], device=latents.device)
        sched = type(scheduler).from_config(scheduler.config)
        sched.set_timesteps(steps)
        ts = sched.timesteps
        t = ts[min(len(ts) - 1, int(len(ts) * (1 - ENCODE_STRENGTH)))]
        b, c, h, w = latents.shape
        noise = torch.randn((self.maps, b, c, h, w), generator=torch.Generator("cpu").manual_seed(seed)).to(latents)
        noisy = sched.add_noise(
            latents.expand(self.maps, -1, -1, -1, -1).reshape(-1, c, h, w), noise.reshape(-1, c, h, w), t
        )

        def predict(embeds):
            out = []
            for chunk in noisy.split(CHUNK_MAPS * b):  # maps-major: each chunk is whole maps
                if poll is not None:
                    poll()
                cond = embeds.to(latents).repeat(len(chunk) // b, 1)
                out.append(
                    unet(
                        sample=chunk,
                        timestep=t,
                        encoder_hidden_states=None,
                        added_cond_kwargs={"image_embeds": cond},
                        return_dict=False,
                    )[0][:, :c].float()
                )
            return torch.cat(out)

        key = (latents, source, steps, seed, self.maps)
        if self.last is not None and _same(self.last[0], key):
            without = self.last[1]
        else:
            without = predict(source)
            self.last = (tuple(k.detach().clone() if isinstance(k, torch.Tensor) else k for k in key), without)
        diff = (predict(edited) - without).abs().reshape(self.maps, b, c, h, w).mean((0, 2))  # [B, h, w]
        region = (diff > diff.mean((1, 2), keepdim=True) * THRESHOLD_RATIO / 2).float()
        region[unedited.to(region.device)] = 0  # no edit, no region (and no division by a zero mean)
        return grow(region[:, None]).to(latents.device)


def _same(a: tuple, b: tuple) -> bool:
    for x, y in zip(a, b, strict=True):
        if isinstance(x, torch.Tensor):
            if x.shape != y.shape or x.dtype != y.dtype or x.device != y.device or not torch.equal(x, y):
                return False
        elif x != y:
            return False
    return True


def grow(region: torch.Tensor) -> torch.Tensor:
    """[B, 1, h, w] 0/1 ``region`` grown by GROW cells on each side."""
    return F.max_pool2d(region, 2 * GROW + 1, stride=1, padding=GROW) if GROW else region


class KeepOutside:
    """A diffusers ``callback_on_step_end``: after each denoising step the latents outside
    ``region`` become the input's ``latents`` noised to the level of the next step (after the last
    step, the input's latents themselves), so only the region is repainted."""

    def __init__(self, region: torch.Tensor, latents: torch.Tensor, seed: int):
        self.region, self.latents = region.to(latents), latents
        self.noise = torch.randn(latents.shape, generator=torch.Generator("cpu").manual_seed(seed)).to(latents)

    def __call__(self, pipe, step: int, timestep, kwargs: dict) -> dict:
        ts = pipe.scheduler.timesteps
        i = int((ts == timestep).nonzero()[0, 0])
        known = (
            self.latents if i + 1 >= len(ts) else pipe.scheduler.add_noise(self.latents, self.noise, ts[i + 1 : i + 2])
        )
        kwargs["latents"] = self.region * kwargs["latents"] + (1 - self.region) * known
        return kwargs
