import pytest
import torch
from PIL import Image

from codec.container import ContainerError, from_bytes
from codec.generator import Generator, save_generator
from codec.images import to_pil
from codec.inversion import SearchConfig, invert
from codec.losses import make_loss
from codec.pipeline import EncodeOptions, bits_for_budget, decode, decode_tensor, encode, encode_batch
from tests.conftest import seed_rounding_depends_on_batch, tiny_config


def _target(g: Generator, seed: int) -> Image.Image:
    z = torch.randn(1, g.config.nz, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return to_pil(g(z)[0])


def _opts(model, **kw) -> EncodeOptions:
    base = dict(model=model, loss="mse", steps=40, restarts=2, device="cpu")
    base.update(kw)
    return EncodeOptions(**base)


def test_encode_decode_roundtrip_reports_exactly_the_decoded_image(tiny_model_file, tiny_generator) -> None:
    img = _target(tiny_generator, 5)
    (r,) = encode_batch([img], _opts(tiny_model_file))
    assert r.num_bytes == 12 + 7  # nz=8 at 7 bits -> 7 payload bytes
    decoded = decode_tensor(r.data, model=tiny_model_file)
    assert torch.equal(decoded, r.decoded)
    assert decode(r.data, model=tiny_model_file).size == (16, 16)
    assert decode(r.data, model=tiny_model_file, size=(40, 30)).size == (40, 30)


def test_search_recovers_a_generated_image(tiny_model_file, tiny_generator) -> None:
    img = _target(tiny_generator, 7)
    (r,) = encode_batch([img], _opts(tiny_model_file, steps=300, restarts=4, bits=12))
    assert r.psnr > 35  # G(z*) reproduces an image G made, up to quantisation


@pytest.mark.parametrize("jitter", [False, True], ids=["this-cpu", "batch-dependent-rounding"])
def test_batch_matches_one_at_a_time(tiny_model_file, tiny_generator, monkeypatch, jitter) -> None:
    if jitter:
        seed_rounding_depends_on_batch(monkeypatch)
    imgs = [_target(tiny_generator, s) for s in (1, 2, 3)]
    together = encode_batch(imgs, _opts(tiny_model_file))
    alone = [encode_batch([im], _opts(tiny_model_file))[0] for im in imgs]
    for a, b in zip(together, alone, strict=True):
        sa, sb = from_bytes(a.data).symbols, from_bytes(b.data).symbols
        assert sum(x != y for x, y in zip(sa, sb, strict=True)) <= 1  # float noise at a bin edge at most
        assert (a.decoded.int() - b.decoded.int()).abs().max() <= 3


def test_quantisation_aware_search_loses_little(tiny_generator) -> None:
    target = tiny_generator(torch.randn(4, 8, generator=torch.Generator().manual_seed(3))).detach()
    loss = make_loss("mse")
    cfg = SearchConfig(steps=150, restarts=2)
    free = invert(tiny_generator, target, loss, None, cfg)
    quant = invert(tiny_generator, target, loss, 5, cfg)
    with torch.no_grad():
        assert torch.allclose(loss(tiny_generator(quant.z), target), quant.loss, atol=1e-5)
    assert quant.symbols is not None and free.symbols is None
    assert (quant.loss.mean() - free.loss.mean()) < 0.02


def test_max_bytes_picks_bits() -> None:
    assert bits_for_budget(100, 112) == 8
    assert bits_for_budget(100, 100) == 7
    assert bits_for_budget(100, 64) == 4
    with pytest.raises(ValueError, match="too small"):
        bits_for_budget(100, 20)


def test_encode_respects_max_bytes(tiny_model_file, tiny_generator) -> None:
    data = encode(_target(tiny_generator, 1), model=tiny_model_file, max_bytes=16, steps=5, device="cpu")
    assert len(data) <= 16 and from_bytes(data).bits == 4


def test_wrong_model_is_refused_with_a_clear_message(tmp_path, tiny_model_file, tiny_generator) -> None:
    torch.manual_seed(99)
    other = tmp_path / "other.safetensors"
    save_generator(Generator(tiny_config()), other)
    data = encode(_target(tiny_generator, 1), model=tiny_model_file, steps=5, device="cpu")
    with pytest.raises(ContainerError, match="fingerprint"):
        decode(data, model=other)
    with pytest.raises(ContainerError, match="not a shipped model"):
        decode(data)


def test_grey_model(tmp_path) -> None:
    torch.manual_seed(0)
    g = Generator(tiny_config(nc=1))
    path = tmp_path / "grey.safetensors"
    save_generator(g, path)
    data = encode(Image.new("RGB", (50, 40), (90, 90, 90)), model=path, steps=5, device="cpu")
    assert decode(data, model=path).mode == "L"


@pytest.mark.parametrize("jitter", [False, True], ids=["this-cpu", "batch-dependent-rounding"])
def test_watson_search_is_repeatable_and_batch_mates_change_nothing_but_rounding(
    tiny_model_file, tiny_generator, monkeypatch, jitter
) -> None:
    # The claim (inversion.py): the same batch gives the same bytes; alone or in a batch, an
    # image gets a result of the same quality and a decoded image within rounding - but not
    # necessarily the same symbols, as the Watson-DFT gradient amplifies last-bit differences.
    imgs = [_target(tiny_generator, s) for s in (5, 6)]
    if jitter:
        seed_rounding_depends_on_batch(monkeypatch)
    opts = _opts(tiny_model_file, loss="watson-dft", steps=30)
    a = encode_batch(imgs, opts)
    assert [r.data for r in a] == [r.data for r in encode_batch(imgs, opts)]
    (alone,) = encode_batch(imgs[1:], opts)
    assert alone.search_loss == pytest.approx(a[1].search_loss, rel=0.1)
    assert (alone.decoded.int() - a[1].decoded.int()).abs().max() <= 3


def test_pil_inputs_get_the_same_mode_handling_as_files(tiny_model_file) -> None:
    rgba = Image.new("RGBA", (16, 16), (0, 0, 0, 0))  # transparent -> white, as for files
    (r,) = encode_batch([rgba], _opts(tiny_model_file, steps=2))
    assert int(r.original.min()) == 255


def test_results_stream_batch_by_batch_and_a_bad_input_stops_only_later_work(tiny_model_file, tiny_generator) -> None:
    from codec.errors import ImageError
    from codec.pipeline import encode_iter

    images = [_target(tiny_generator, 1), b"not an image", _target(tiny_generator, 2)]
    got = []
    with pytest.raises(ImageError):
        for i, _ in encode_iter(images, _opts(tiny_model_file, batch_size=1, steps=2)):
            got.append(i)
    assert got == [0]  # the batch before the bad input was finished and handed over

    out = list(encode_iter(images, _opts(tiny_model_file, batch_size=2, steps=2), keep_going=True))
    assert [i for i, _ in out] == [0, 1, 2]
    assert isinstance(out[1][1], ImageError) and "not a readable image" in str(out[1][1])
    assert all(r.num_bytes > 0 and r.seconds > 0 for i, r in out if i != 1)


def test_options_are_checked_before_any_input_is_read(tiny_model_file) -> None:
    from codec.pipeline import encode_iter

    with pytest.raises(ValueError, match="--quality"):
        next(encode_iter([b"not an image"], _opts(tiny_model_file, quality=3)))


def test_progress_adds_up_to_the_images_and_never_overruns(tiny_model_file, tiny_generator) -> None:
    imgs = [_target(tiny_generator, s) for s in range(5)]
    seen: list[float] = []
    encode_batch(imgs, _opts(tiny_model_file, batch_size=2, steps=10), seen.append)
    running = torch.tensor(seen, dtype=torch.float64).cumsum(0)
    assert len(seen) > 5 and (torch.tensor(seen) >= 0).all()  # reported per step, not per batch
    assert running[-1].item() == pytest.approx(5) and running.max().item() <= 5 + 1e-9


def test_the_written_out_adam_steps_exactly_as_torch_optim_adam() -> None:
    from codec.inversion import Adam

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(5, 8, generator=gen)
    b = a.clone().requires_grad_(True)
    mine, theirs = Adam(a, lr=0.05), torch.optim.Adam([b], lr=0.05)
    for _ in range(20):
        grad = torch.randn(5, 8, generator=gen)
        mine.step(grad)
        b.grad = grad.clone()
        theirs.step()
    assert torch.equal(a, b.detach())


def test_the_package_exports_its_public_surface() -> None:
    import codec
    from codec import errors, pipeline

    for name in codec.__all__:
        assert getattr(codec, name) is not None, name
    assert codec.EncodeResult is pipeline.EncodeResult and codec.ImageError is errors.ImageError
    assert issubclass(codec.ContainerError, codec.PercodecError)


def test_an_option_only_the_other_backend_takes_is_refused_in_the_api_too() -> None:
    """Each backend declares the options only it takes (backends.refuse_others): the GAN
    search's learning rate given to a rate-distortion model was silently ignored."""
    from codec.pipeline import EncodeOptions, encode_batch
    from tests.conftest import SAMPLES

    with pytest.raises(ValueError, match="--lr applies to GAN-only models; rate-distortion models take --quality"):
        encode_batch([SAMPLES / "astronaut.png"], EncodeOptions(lr=0.5))
    with pytest.raises(ValueError, match="--quality applies to rate-distortion models"):
        encode_batch([SAMPLES / "astronaut.png"], EncodeOptions(model="celeba64-gan", quality=3))
