"""The GAN-only objective (the reference method): DCGAN generator against its discriminator."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from codec.generator import Discriminator, Generator, ModelConfig, load_generator, recalibrate_batchnorm, save_generator
from codec.images import save_grid


def gan_step(
    G: nn.Module,
    D: nn.Module,
    optG: torch.optim.Optimizer,
    optD: torch.optim.Optimizer,
    x: torch.Tensor,
    z: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One DCGAN update; returns D's logits on real and fake, and the D and G losses."""
    ones, zeros = torch.ones(len(x), device=x.device), torch.zeros(len(x), device=x.device)
    # Discriminator: real -> 1, fake -> 0 (separate batches, as BatchNorm expects).
    optD.zero_grad(set_to_none=True)
    fake = G(z)
    d_real = D(x)
    loss_real = F.binary_cross_entropy_with_logits(d_real, ones)
    loss_real.backward()
    d_fake = D(fake.detach())
    loss_fake = F.binary_cross_entropy_with_logits(d_fake, zeros)
    loss_fake.backward()
    optD.step()
    # Generator: the non-saturating loss, fake -> 1.
    optG.zero_grad(set_to_none=True)
    loss_g = F.binary_cross_entropy_with_logits(D(fake), ones)
    loss_g.backward()
    optG.step()
    return d_real.detach(), d_fake.detach(), (loss_real + loss_fake).detach(), loss_g.detach()


class GanObjective:
    """Holds G, D and their optimisers; `step` is one DCGAN update on a batch."""

    model_file = "generator.safetensors"

    @classmethod
    def from_config(cls, cfg, mcfg: ModelConfig, device: torch.device, wrap, valid, resuming: bool) -> GanObjective:
        return cls(mcfg, device, wrap, lr=cfg.lr, beta1=cfg.beta1, init_generator=cfg.init_generator)

    def __init__(
        self, mcfg: ModelConfig, device: torch.device, wrap, *, lr: float, beta1: float, init_generator: str | None
    ) -> None:
        self.netG, self.netD = Generator(mcfg).to(device), Discriminator(mcfg).to(device)
        self.optG = torch.optim.Adam(self.netG.parameters(), lr=lr, betas=(beta1, 0.999))
        self.optD = torch.optim.Adam(self.netD.parameters(), lr=lr, betas=(beta1, 0.999))
        self.G, self.D = wrap(self.netG), wrap(self.netD)
        self.nz, self.device = mcfg.nz, device
        self.fixed_z = torch.randn(64, mcfg.nz, generator=torch.Generator().manual_seed(1234))
        if init_generator:
            # Warm start (e.g. from a shipped model when a run's checkpoint is lost): G's
            # weights only; D and both optimisers start fresh.
            init, _ = load_generator(init_generator)
            shape = ("nz", "ngf", "nc", "size")
            if any(getattr(init.config, k) != getattr(mcfg, k) for k in shape):
                raise ValueError(f"{init_generator} was made with {init.config}, not {mcfg}")
            self.netG.load_state_dict(init.state_dict(), strict=False)

    def step(self, x: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
        z = torch.randn(len(x), self.nz, generator=gen).to(x.device)
        d_real, d_fake, loss_d, loss_g = gan_step(self.G, self.D, self.optG, self.optD, x, z)
        return {
            "loss_d": loss_d,
            "loss_g": loss_g,
            "d_real": torch.sigmoid(d_real).mean(),
            "d_fake": torch.sigmoid(d_fake).mean(),
        }

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.optG, self.optD]

    def modules(self) -> dict[str, nn.Module]:
        return {"G": self.netG, "D": self.netD}

    def state_dict(self) -> dict:
        return {"G": self.netG.state_dict(), "D": self.netD.state_dict(), "optG": self.optG.state_dict(),
                "optD": self.optD.state_dict()}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.netG.load_state_dict(state["G"])
        self.netD.load_state_dict(state["D"])
        self.optG.load_state_dict(state["optG"])
        self.optD.load_state_dict(state["optD"])

    def validate(self) -> dict[str, float]:
        return {}

    @torch.no_grad()
    def save_samples(self, path: Path) -> None:
        self.netG.eval()
        save_grid(self.netG(self.fixed_z.to(self.device)), path)
        self.netG.train()

    def export(self, path: Path, card: dict[str, str]) -> None:
        save_generator(recalibrate_batchnorm(self.netG, batches=8, batch_size=256), path, card)
