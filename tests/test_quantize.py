import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from codec.quantize import dequantize, pack, payload_size, quantize, unpack


def test_symbols_are_uniform_under_the_prior() -> None:
    z = torch.randn(200_000, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(quantize(z, 4), minlength=16).double()
    assert (counts / counts.mean() - 1).abs().max() < 0.03


def test_dequantize_lands_in_its_own_bin() -> None:
    for bits in (1, 3, 7, 12):
        s = torch.arange(2**bits)
        assert torch.equal(quantize(dequantize(s, bits), bits), s)


def test_extreme_latents_clamp() -> None:
    s = quantize(torch.tensor([-1e9, -40.0, 0.0, 40.0, 1e9]), 7)
    assert s.tolist() == [0, 0, 64, 127, 127]


def test_error_shrinks_with_bits() -> None:
    z = torch.randn(10_000, generator=torch.Generator().manual_seed(1)).clamp(-2, 2)
    errs = [(dequantize(quantize(z, b), b) - z).abs().mean().item() for b in (4, 6, 8)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.01


@given(st.integers(1, 16), st.data())
def test_pack_unpack_roundtrip(bits, data) -> None:
    s = data.draw(st.lists(st.integers(0, 2**bits - 1), min_size=1, max_size=300))
    raw = pack(s, bits)
    assert len(raw) == payload_size(len(s), bits)
    assert unpack(raw, len(s), bits).tolist() == s


def test_pack_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        pack(np.array([8]), 3)
    with pytest.raises(ValueError):
        quantize(torch.zeros(1), 0)
