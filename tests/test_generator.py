import copy

import pytest
import torch
from safetensors.torch import save_file

from codec.errors import ModelError
from codec.generator import (
    Discriminator,
    Generator,
    ModelConfig,
    fingerprint,
    load_generator,
    recalibrate_batchnorm,
    resolve_model,
    save_generator,
)


@pytest.mark.parametrize("nc,size", [(3, 64), (1, 32), (3, 16)])
def test_shapes(nc: int, size: int) -> None:
    cfg = ModelConfig(nz=10, ngf=8, ndf=8, nc=nc, size=size)
    g, d = Generator(cfg).eval(), Discriminator(cfg)
    x = g(torch.randn(5, 10))
    assert x.shape == (5, nc, size, size)
    assert x.abs().max() <= 1.0
    assert d(x).shape == (5,)


def test_the_first_layer_as_a_matrix_product_is_the_transposed_convolution() -> None:
    """forward() runs the seed layer as a matmul (faster on CPUs); the network is the DCGAN's."""
    torch.manual_seed(0)
    g = Generator(ModelConfig(nz=10, ngf=8, size=32)).eval()
    z = torch.randn(4, 10, requires_grad=True)
    ref = g.main(z.view(4, 10, 1, 1))
    assert torch.allclose(g(z), ref, atol=1e-6)
    (gz,) = torch.autograd.grad(g(z).square().sum(), z)
    (gr,) = torch.autograd.grad(ref.square().sum(), z)
    assert torch.allclose(gz, gr, atol=1e-5)


def test_classic_widths_match_the_papers_parameter_counts() -> None:
    full = Generator(ModelConfig(ngf=64))
    half = Generator(ModelConfig(ngf=32))
    assert 3.5e6 < sum(p.numel() for p in full.parameters()) < 3.7e6
    assert 1.0e6 < sum(p.numel() for p in half.parameters()) < 1.2e6


def test_invalid_config() -> None:
    with pytest.raises(ValueError):
        ModelConfig(size=48)


def test_save_load_roundtrip_keeps_outputs_and_card(tmp_path, tiny_generator) -> None:
    path = tmp_path / "g.safetensors"
    save_generator(tiny_generator, path, {"dataset": "celeba", "images_seen": "7"})
    g, card = load_generator(path)
    z = torch.randn(3, g.config.nz)
    assert torch.equal(g(z), tiny_generator(z))
    assert card == {"dataset": "celeba", "images_seen": "7"}
    assert g.config == tiny_generator.config
    assert not g.training and not any(p.requires_grad for p in g.parameters())
    assert fingerprint(g) == fingerprint(tiny_generator)


def test_half_precision_file_fingerprint_is_stable(tmp_path, tiny_generator) -> None:
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_generator(tiny_generator, a, half=True)
    ga, _ = load_generator(a)
    save_generator(ga, b, half=True)
    gb, _ = load_generator(b)
    assert fingerprint(ga) == fingerprint(gb)
    assert fingerprint(ga) != fingerprint(tiny_generator)  # rounded weights are a different model


def test_fingerprint_changes_with_any_weight(tiny_generator) -> None:
    before = fingerprint(tiny_generator)
    with torch.no_grad():
        next(tiny_generator.parameters()).view(-1)[0] += 1e-3
    assert fingerprint(tiny_generator) != before
    assert len(before) == 8


def test_loading_is_pickle_free_and_rejects_foreign_files(tmp_path) -> None:
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(ModelError, match="not a percodec generator"):
        load_generator(other)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 20)
    with pytest.raises(ModelError):
        load_generator(junk)
    with pytest.raises(ModelError, match="no such model"):
        load_generator(tmp_path / "missing.safetensors")


def test_resolve_model(tmp_path, tiny_model_file) -> None:
    assert resolve_model(tiny_model_file) == tiny_model_file
    with pytest.raises(ModelError, match="unknown model"):
        resolve_model("no-such-model")


def _batchnorm_input_statistics(g: Generator, n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per BatchNorm layer: the channel mean and variance of its input over n latents
    z ~ N(0, I), each layer's input made as in training (earlier layers on batch statistics)."""
    g = copy.deepcopy(g).train()
    stats = []
    hooks = [
        m.register_forward_pre_hook(lambda _m, a: stats.append((a[0].mean((0, 2, 3)), a[0].var((0, 2, 3)))))
        for m in g.modules()
        if isinstance(m, torch.nn.BatchNorm2d)
    ]
    with torch.no_grad():
        g(torch.randn(n, g.config.nz, generator=torch.Generator().manual_seed(seed)))
    for h in hooks:
        h.remove()
    return stats


def test_recalibrated_batchnorm_matches_population_statistics(tiny_generator) -> None:
    for m in tiny_generator.modules():  # stale statistics, far from the population's
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.fill_(3.0)
            m.running_var.fill_(9.0)
    g = recalibrate_batchnorm(tiny_generator, batches=4, batch_size=512)
    bns = [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    measured = _batchnorm_input_statistics(tiny_generator, 4096, seed=99)  # other latents than the recalibration's
    assert len(measured) == len(bns) >= 2
    for bn, (mean, var) in zip(bns, measured, strict=True):
        assert torch.allclose(bn.running_mean, mean, atol=0.05 * var.sqrt().max().item())
        assert torch.allclose(bn.running_var, var, rtol=0.1)
    assert not g.training
