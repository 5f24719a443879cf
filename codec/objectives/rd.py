"""The rate-distortion objective: train E, the prior and G as a compressor.

    y = E(x);  rate R = -log2 p(y + u·Δ) (u uniform noise: the stand-in for rounding);
    x̂ = G(round(y)) (straight-through);  loss = D(x̂, x) + β·R/pixels + a·adversarial

- Δ, the quantisation step, is drawn per image log-uniformly from `step_range` so one model
  serves every level (levels are steps; see codec.rdmodel).
- β is not a fixed setting: it starts where rate and distortion weigh alike and is steered
  so that the mean rate at Δ = 1 stays at `target_bytes` (multiplicative update each step),
  measured on the rounded latents as coding will see them (noise overstates the rate of
  near-constant dimensions): runs with different distortions then meet at the same rate.
- The adversarial term (weight a, 0 = off) is the non-saturating DCGAN loss with the
  DCGAN discriminator, both sides seen through DiffAugment (translation + cutout).
- The prior's centres follow the running mean of y.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from codec.augment import diff_augment
from codec.container import OVERHEAD_V2
from codec.generator import Discriminator, ModelConfig
from codec.images import float_to_uint8, save_grid
from codec.losses import make_mix
from codec.metrics import psnr, ssim
from codec.rdmodel import RDModel, load_rd, save_rd, warm_start

BETA_RATE = 0.02  # multiplicative β update per step, per unit of relative rate error


def _average_across_ranks(t: torch.Tensor) -> torch.Tensor:
    """Mean over torchrun ranks, in place (no-op in a single process), so all ranks agree."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return t


class RDObjective:
    """Holds the networks and optimisers of an RD run; `step` does one update."""

    model_file = "model.safetensors"

    @classmethod
    def from_config(cls, cfg, mcfg: ModelConfig, device: torch.device, wrap, valid, resuming: bool) -> RDObjective:
        return cls(
            mcfg,
            device,
            wrap,
            lr=cfg.lr,
            distortion=cfg.distortion,
            target_bytes=cfg.target_bytes,
            adv_weight=cfg.adv_weight,
            step_range=cfg.step_range,
            valid=valid(),
            init_from=None if resuming else cfg.init_from,
        )  # a checkpoint holds the warm-started weights

    def __init__(
        self,
        mcfg: ModelConfig,
        device: torch.device,
        wrap,
        *,
        lr: float,
        distortion: str,
        target_bytes: float,
        adv_weight: float,
        step_range: tuple[float, float],
        valid: torch.Tensor,
        init_from: str | None = None,
    ) -> None:
        self.model = RDModel(mcfg)
        self.log_beta = torch.tensor(math.nan)  # set at the first step: rate and distortion weighed alike
        self.lineage: dict[str, str] = {}  # for the card: what a warm start began from
        if init_from:  # warm start (the latent may grow) at the source's β; optimisers start fresh
            source, card = load_rd(init_from)
            warm_start(self.model, source)
            if "beta" in card and source.config.size == mcfg.size:  # β is per pixel: steered anew at a new size
                self.log_beta = torch.tensor(math.log(float(card["beta"])))
            self.lineage = {"init_from": str(init_from), "init_images_seen": card.get("images_seen", "?"),
                            "init_wall_seconds": card.get("wall_seconds", "?")}  # fmt: skip
        self.model.to(device)
        self.device = device
        self.distortion = make_mix(distortion, mcfg.nc).to(device).train()
        self.target_bits = 8 * (target_bytes - OVERHEAD_V2)
        self.adv_weight = adv_weight
        self.log_step_range = (math.log(step_range[0]), math.log(step_range[1]))
        self.pixels = mcfg.size * mcfg.size
        m = self.model
        self.E, self.G = wrap(m.encoder), wrap(m.generator)
        self.opt = torch.optim.Adam([*m.encoder.parameters(), *m.generator.parameters()], lr=lr)
        self.opt_prior = torch.optim.Adam(m.prior.parameters(), lr=1e-3)
        self.D = self.opt_d = None
        if adv_weight > 0:
            self.netD = Discriminator(mcfg).to(device)
            self.D = wrap(self.netD)
            self.opt_d = torch.optim.Adam(self.netD.parameters(), lr=lr, betas=(0.5, 0.999))
        self.valid = valid  # uint8 (N, C, H, W): fixed images for validation and sample grids

    def step(self, x: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """One update on real images x (B, C, H, W) in [-1, 1]."""
        prior = self.model.prior
        b = len(x)
        u = torch.rand(b, 1, generator=gen)
        delta = torch.exp(self.log_step_range[0] + u * (self.log_step_range[1] - self.log_step_range[0])).to(x.device)
        y = self.E(x)
        bits = prior.bits(prior.noisy(y, delta, gen), delta)
        x_hat = self.G(prior.round_ste(y, delta))
        dist = self.distortion(x_hat, x).mean()
        if self.log_beta.isnan():  # scale-free start, whatever the distortion's units
            self.log_beta = (dist.detach() * self.pixels / bits.mean().detach()).log().cpu()
        beta = self.log_beta.exp().item()
        loss = dist + beta * bits.mean() / self.pixels
        out: dict[str, torch.Tensor] = {}
        if self.D is not None:
            out["loss_d"] = self._update_discriminator(x, x_hat.detach(), gen)
            fake = F.binary_cross_entropy_with_logits(self.D(diff_augment(x_hat, gen)), torch.ones(b, device=x.device))
            loss = loss + self.adv_weight * fake
            out["loss_adv"] = fake.detach()
        self.opt.zero_grad(set_to_none=True)
        self.opt_prior.zero_grad(set_to_none=True)
        loss.backward()
        for p in prior.parameters():  # the prior is not DDP-wrapped (it has no forward)
            _average_across_ranks(p.grad)
        self.opt.step()
        self.opt_prior.step()
        prior.track_centre(_average_across_ranks(y.detach().mean(0, keepdim=True)))
        with torch.no_grad():  # β steers the coded rate (rounded, Δ = 1) to the target
            ref_bits = _average_across_ranks(prior.bits(prior.rounded(y.detach())).mean())
            self.log_beta += BETA_RATE * (ref_bits.cpu() / self.target_bits - 1)
            self.log_beta.clamp_(-12, 6)
        out.update(distortion=dist.detach(), bits=bits.mean().detach(), bits_ref=ref_bits, beta=self.log_beta.exp())
        return out

    def _update_discriminator(self, real: torch.Tensor, fake: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b = len(real)
        self.opt_d.zero_grad(set_to_none=True)
        loss = F.binary_cross_entropy_with_logits(
            self.D(diff_augment(real, gen)), torch.ones(b, device=real.device)
        ) + F.binary_cross_entropy_with_logits(self.D(diff_augment(fake, gen)), torch.zeros(b, device=real.device))
        loss.backward()
        self.opt_d.step()
        return loss.detach()

    # --- what the training loop saves, shows and exports -------------------------------------

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [o for o in (self.opt, self.opt_prior, self.opt_d) if o is not None]

    def modules(self) -> dict[str, nn.Module]:
        out = {"model": self.model}
        if self.D is not None:
            out["D"] = self.netD
        return out

    def state_dict(self) -> dict:
        state = {k: m.state_dict() for k, m in self.modules().items()}
        state.update(opt=self.opt.state_dict(), opt_prior=self.opt_prior.state_dict(), log_beta=self.log_beta)
        state["lineage"] = json.dumps(self.lineage)
        if self.opt_d is not None:
            state["opt_d"] = self.opt_d.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        if ("D" in state) != (self.D is not None):
            have = "with" if "D" in state else "without"
            raise ValueError(
                f"the checkpoint was trained {have} the adversarial term: resume with the same --adv-weight"
            )
        for k, m in self.modules().items():
            m.load_state_dict(state[k])
        self.opt.load_state_dict(state["opt"])
        self.opt_prior.load_state_dict(state["opt_prior"])
        self.log_beta = state["log_beta"].clone()
        self.lineage = json.loads(state.get("lineage", "{}"))
        if self.opt_d is not None:
            self.opt_d.load_state_dict(state["opt_d"])

    @torch.no_grad()
    def validate(self, level: int = 4) -> dict[str, float]:
        """Rounded latents at one level on the fixed valid images: ideal bytes, PSNR, SSIM."""
        m = self.model.eval()
        try:
            x = self.valid.to(self.device).float().div(127.5).sub(1)
            step = m.step_of(level)
            y_hat = m.prior.rounded(m.encoder(x), step)
            nbytes = m.ideal_bytes(y_hat, step)
            dec = float_to_uint8(m.generator(y_hat)).cpu()
        finally:
            m.train()
        return {
            "val_bytes": float(nbytes.mean()),
            "val_psnr": float(psnr(dec, self.valid).mean()),
            "val_ssim": float(ssim(dec, self.valid).mean()),
        }

    @torch.no_grad()
    def save_samples(self, path: Path, count: int = 32) -> None:
        """Originals (odd rows) above their reconstructions at the default level."""
        m = self.model.eval()
        try:
            x = self.valid[:count].to(self.device).float().div(127.5).sub(1)
            step = m.step_of(4)
            rec = m.generator(m.prior.rounded(m.encoder(x), step))
        finally:
            m.train()
        rows = [t for i in range(0, len(x), 8) for t in (x[i : i + 8], rec[i : i + 8])]
        save_grid(torch.cat(rows), path, nrow=8)

    def export(self, path: Path, card: dict[str, str]) -> None:
        card = {**card, **self.lineage, "objective": "rd", "beta": f"{self.log_beta.exp().item():.5g}"}
        save_rd(self.model, path, card)
