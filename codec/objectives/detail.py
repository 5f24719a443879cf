"""The detail objective: train a detail latent (codec.detail) on top of a trained RD model.

The RD model (its encoder, prior and generator) stays frozen: its global latent is the
encoder's, rounded at one of its own levels (drawn per image from `global_levels`; of
celeba64-id's 13: 4, 7, 10, 13). Per image a detail level k is drawn too, and

    y = A(x, G(z_hat)) * gain_k;  (mu, sigma) = P(f(z_hat)) * gain_k
    rate R = -log2 N(mu, sigma)(y + u)   (u uniform noise: the stand-in for rounding)
    x_hat = G_rest(f + S(round_around(y, mu) / gain_k))
    loss = D(x_hat, x) + lambda_k * R / pixels

with lambda_k log-spaced between `lambdas` (level 1 the coarsest; `--detail-lambdas`, a
fine-tune keeps its model's own unless given). The distortion is the
mean over the batch; lambda per level is fixed (no steering), so a level's bytes are what the
network finds worth spending at that slope. Over the first `WARMUP` steps the lambdas rise
geometrically from 1% of their value: at full weight from the start the rate term shut the
fresh latent down before the synthesis had learnt to use it (1,500 steps: +0.5 dB for 80 B).
A fine-tune with a new entropy-network width (`--detail-context-width`) trains that network
alone on R, everything else frozen. `--detail-identity W K` adds the identity term (codec.losses.
identity) to D at the coarse detail levels only, W at level 1 falling linearly to nothing at
level K: there the detail's pixels cost the person (the scale leaves those levels off for it),
while a fine-tune with the term at every level lost PSNR at the top.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from codec.detail import DetailConfig, DetailNet, bits, features, render, round_around
from codec.generator import ModelConfig
from codec.images import float_to_uint8, save_grid
from codec.losses import make_loss, make_mix
from codec.metrics import psnr, ssim
from codec.rdmodel import RDModel

if TYPE_CHECKING:
    from codec.detailmodel import DetailModel

#: Steps over which the rate weights rise from 1% to their full value.
WARMUP = 3000
#: A new detail latent's rate weights per pixel at its coarsest and finest level.
LAMBDAS = (0.25, 0.006)


class DetailObjective:
    """Holds the frozen RD model, the detail networks and their optimiser."""

    model_file = "model.safetensors"

    @classmethod
    def from_config(cls, cfg, mcfg: ModelConfig, device: torch.device, wrap, valid, resuming: bool) -> DetailObjective:
        if not cfg.init_from:
            raise ValueError("--objective detail needs --init-from: the RD model the detail latent builds on")
        return cls(mcfg, device, wrap, lr=cfg.lr, distortion=cfg.distortion, init_from=cfg.init_from, valid=valid(),
                   lambdas=tuple(cfg.detail_lambdas) if cfg.detail_lambdas else None,
                   context_width=cfg.detail_context_width,
                   identity=tuple(cfg.detail_identity) if cfg.detail_identity else None)  # fmt: skip

    def __init__(
        self,
        mcfg: ModelConfig,
        device: torch.device,
        wrap,
        *,
        lr: float,
        distortion: str,
        init_from: str,
        valid: torch.Tensor,
        lambdas: tuple[float, float] | None = None,
        global_levels: tuple[int, ...] | None = None,
        detail: DetailConfig | None = None,
        context_width: int | None = None,
        identity: tuple[float, int] | None = None,
    ) -> None:
        if not init_from:
            raise ValueError("--objective detail needs --init-from: the RD model the detail builds on")
        base, card, tuned = _load_base(init_from)
        a, b = base.config, mcfg
        if (a.nz, a.ngf, a.nc, a.size) != (b.nz, b.ngf, b.nc, b.size):
            raise ValueError(f"--init-from {init_from} is a {base.config} model; pass its --nz and --width")
        self.base: RDModel = base.to(device)
        self.lineage = {"init_from": str(init_from), "init_images_seen": card.get("images_seen", "?")}
        n = len(base.step_sizes)  # default: four of its levels from a third of the way up to the top
        self.global_levels = global_levels or tuple(sorted({round(v) for v in np.linspace(max(1, n // 3), n, 4)}))
        self.context_only = False
        if tuned is not None:  # fine-tuning: its own detail networks and rate weights, no warm-up
            self.net = tuned.detail.to(device).requires_grad_(True)
            if context_width and context_width != self.net.config.context_channels:
                if identity:
                    raise ValueError("--detail-identity has no effect on a new entropy network (trained on the rate)")
                self.net, self.context_only = _new_context(self.net, base, context_width), True
            own = torch.tensor(tuned.lambdas, dtype=torch.float32)
            self.lambdas = (own if lambdas is None else _log_spaced(lambdas, len(own))).to(device)
            self.steps_done = WARMUP
        else:
            self.net = DetailNet(detail or DetailConfig(), base.generator).to(device)
            self.lambdas = _log_spaced(lambdas or LAMBDAS, self.net.config.levels).to(device)
            self.steps_done = 0
        self.distortion = make_mix(distortion, mcfg.nc).to(device).train()
        self.identity_weights = _identity_weights(identity, self.net.config.levels).to(device) if identity else None
        self.identity = make_loss("identity", mcfg.nc).to(device).train() if identity else None
        self.pixels = mcfg.size * mcfg.size
        self.device = device
        self.coded = _Coded(self.net, base.generator, rate_only=False)  # images and rates: validation, samples
        # the one training path, wrapped: under torchrun its gradients are averaged over the ranks
        self.A = wrap(_Coded(self.net, base.generator, rate_only=True) if self.context_only else self.coded)
        trained = self.net.context if self.context_only else self.net
        self.opt = torch.optim.Adam(trained.parameters(), lr=lr)
        self.valid = valid

    @torch.no_grad()
    def _global(self, x: torch.Tensor, levels: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """G's features of the encoder's rounded global latent, and the image they draw."""
        m = self.base
        z_hat = m.prior.rounded(m.encoder(x), m.level_steps(levels, x.device))
        f = features(m.generator, z_hat)
        return f, render(m.generator, f)

    def forward(
        self, x: torch.Tensor, f: torch.Tensor, base: torch.Tensor, k: torch.Tensor, noise: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(decoded image, bits per image) at detail levels k; noise None: rounded rate."""
        return self.coded(x, f, base, k, noise)

    def step(self, x: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
        b = len(x)
        g_idx = torch.randint(len(self.global_levels), (b,), generator=gen)
        k = torch.randint(1, self.net.config.levels + 1, (b,), generator=gen).to(x.device)
        f, base = self._global(x, [self.global_levels[i] for i in g_idx])
        c = self.net.config.channels
        noise = (torch.rand((b, c, *f.shape[2:]), generator=gen) - 0.5).to(x.device)
        if self.context_only:
            return self._context_step(x, f, base, k, noise)
        x_hat, rate = self.A(x, f, base, k, noise)
        dist = self.distortion(x_hat, x) + self._identity_term(x_hat, x, k)
        warm = 0.01 ** max(0.0, 1 - self.steps_done / WARMUP)
        loss = (dist + warm * self.lambdas[k - 1] * rate / self.pixels).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.steps_done += 1
        return {"loss": loss.detach(), "distortion": dist.mean().detach(), "bits": rate.mean().detach()}

    def _identity_term(self, x_hat: torch.Tensor, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Per image: the identity loss at its level's weight (computed only where it is not 0)."""
        if self.identity is None:
            return torch.zeros((), device=x.device)
        w = self.identity_weights[k - 1]
        out = torch.zeros_like(w)
        rows = w > 0
        if rows.any():
            out = out.index_put((rows,), w[rows] * self.identity(x_hat[rows], x[rows]))
        return out

    def _context_step(
        self, x: torch.Tensor, f: torch.Tensor, base: torch.Tensor, k: torch.Tensor, noise: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """A new entropy network for fixed analysis and synthesis: the rate alone (the image
        does not depend on the predicted scales, and its gradient skips the means)."""
        _, rate = self.A(x, f, base, k, noise)
        loss = rate.mean() / self.pixels
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.steps_done += 1
        return {"loss": loss.detach(), "bits": rate.mean().detach()}

    # --- what the training loop saves, shows and exports -------------------------------------

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.opt]

    def modules(self) -> dict[str, nn.Module]:
        return {"detail": self.net}

    def state_dict(self) -> dict:
        return {"detail": self.net.state_dict(), "opt": self.opt.state_dict(), "lineage": json.dumps(self.lineage),
                "detail_config": json.dumps(self.net.config.to_dict()), "steps_done": self.steps_done}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["detail"])
        self.opt.load_state_dict(state["opt"])
        self.lineage = json.loads(state.get("lineage", "{}"))
        self.steps_done = int(state.get("steps_done", 0))

    @torch.no_grad()
    def _decoded(self, x: torch.Tensor, level: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        f, base = self._global(x, [level] * len(x))
        kk = torch.full((len(x),), k, device=x.device)
        return self.forward(x, f, base, kk, None)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Ideal bytes (global + detail, header aside) and PSNR/SSIM at a few (global, detail)
        levels on the fixed valid images."""
        self.net.eval()
        out: dict[str, float] = {}
        try:
            x = self.valid.to(self.device).float().div(127.5).sub(1)
            m = self.base
            for level in (self.global_levels[0], self.global_levels[-1]):
                step = m.step_of(level)
                gbits = m.prior.bits(m.prior.rounded(m.encoder(x), step), step)
                for k in (1, (self.net.config.levels + 1) // 2, self.net.config.levels):
                    x_hat, rate = self._decoded(x, level, k)
                    dec = float_to_uint8(x_hat).cpu()
                    tag = f"g{level}k{k}"
                    out[f"{tag}_bytes"] = float((gbits + rate).mean() / 8)
                    out[f"{tag}_psnr"] = float(psnr(dec, self.valid).mean())
                    out[f"{tag}_ssim"] = float(ssim(dec, self.valid).mean())
        finally:
            self.net.train()
        return out

    @torch.no_grad()
    def save_samples(self, path: Path, count: int = 16) -> None:
        """Originals, then the global latent alone, then the detail's coarsest and finest level."""
        self.net.eval()
        try:
            x = self.valid[:count].to(self.device).float().div(127.5).sub(1)
            level = self.global_levels[len(self.global_levels) // 2]
            f, base = self._global(x, [level] * len(x))
            rows = [x, base, self._decoded(x, level, 1)[0], self._decoded(x, level, self.net.config.levels)[0]]
        finally:
            self.net.train()
        save_grid(torch.cat(rows), path, nrow=count)

    def export(self, path: Path, card: dict[str, str]) -> None:
        """The detail model: `base`'s global levels with every detail level (its levels are
        picked when it ships: `percodec ship run`)."""
        from codec.detailmodel import save_detail  # the file format lives with the model

        card = {**card, **self.lineage, "objective": "detail"}
        save_detail(self.base, self.net, path, card, lambdas=tuple(self.lambdas.tolist()))


class _Coded(nn.Module):
    """The detail objective's one forward path, and the module data-parallel training wraps
    (DDP averages gradients only over its wrapper's own forward): decoded images and bits
    per image at detail levels k. rate_only: the rate of a new entropy network on fixed
    analysis (no image; analysis and gains get no gradient)."""

    def __init__(self, net: DetailNet, generator: nn.Module, rate_only: bool) -> None:
        super().__init__()
        self.net, self.rate_only = net, rate_only
        self._generator = (generator,)  # frozen and shared with the base model: not a submodule

    def forward(
        self, x: torch.Tensor, f: torch.Tensor, base: torch.Tensor, k: torch.Tensor, noise: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(decoded image or None, bits per image); noise None: the rate of the rounded latent."""
        net = self.net
        gain = net.gains(k).detach() if self.rate_only else net.gains(k)
        with torch.no_grad() if self.rate_only else contextlib.nullcontext():
            y = net.analysis(torch.cat([x, base], 1)) * gain
        mu, sigma = net.predict(f, gain)
        y_hat = round_around(y, mu)
        rate = bits(y + noise if noise is not None else y_hat, mu, sigma)
        if self.rate_only:
            return None, rate
        return render(self._generator[0], f, net.additions(y_hat / gain)), rate


def _new_context(net: DetailNet, base: RDModel, width: int) -> DetailNet:
    """`net` with a fresh entropy network `width` channels wide, every other weight kept and
    frozen: a lighter network for the float64 side information every decoder computes."""
    from dataclasses import replace

    new = DetailNet(replace(net.config, context_width=width), base.generator).to(net.log_gain.device)
    kept = {k: v for k, v in net.state_dict().items() if not k.startswith("context.")}
    new.load_state_dict(kept, strict=False)
    for name, p in new.named_parameters():
        p.requires_grad_(name.startswith("context."))
    return new


def _log_spaced(ends: tuple[float, float], n: int) -> torch.Tensor:
    return torch.exp(torch.linspace(math.log(ends[0]), math.log(ends[1]), n))


def _load_base(init_from: str) -> tuple[RDModel, dict, DetailModel | None]:
    """The RD model to build on, its card, and the detail model to fine-tune if that is what
    `init_from` holds (the RD model is then its base, frozen)."""
    from codec.detailmodel import DetailModel
    from codec.zoo import load_file

    m, card = load_file(init_from)
    if not isinstance(m, DetailModel):
        if not isinstance(m, RDModel):
            raise ValueError(f"--init-from {init_from}: not a rate-distortion model")
        return m, card, None
    if not m.lambdas:
        raise ValueError(f"--init-from {init_from}: a detail model without its rate weights cannot be fine-tuned")
    return m.base, card, m


def _identity_weights(identity: tuple[float, int], levels: int) -> torch.Tensor:
    """The identity term's weight per detail level: W at level 1, falling linearly to 0 at
    level K (and 0 above)."""
    weight, last = identity
    if weight <= 0 or last < 2:
        raise ValueError(f"--detail-identity {weight} {last}: needs a weight > 0 and a last level of at least 2")
    k = torch.arange(1, levels + 1, dtype=torch.float32)
    return weight * (1 - (k - 1) / (last - 1)).clamp_min(0)
