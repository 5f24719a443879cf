"""The shipped generators: loadable, packaged into the wheel, and good enough end to end."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from codec import family
from codec.container import from_bytes
from codec.generator import fingerprint, load_generator, shipped_models
from codec.images import float_to_uint8
from codec.metrics import psnr
from codec.pipeline import DEFAULT_MAX_BYTES, EncodeOptions, decode_tensor, encode_batch, load_model
from codec.rdmodel import load_rd
from codec.zoo import load_file
from tests.conftest import ROOT, SAMPLES


def _networks(m: torch.nn.Module, family_name: str) -> list[torch.nn.Module]:
    """The networks a model file stores, by its family."""
    if family_name == "gan":
        return [m]
    if family_name == "rd":
        return [m.encoder, m.generator]
    return [m.base.encoder, m.base.generator, m.detail]


def test_shipped_models_load_with_cards() -> None:
    models = shipped_models()
    assert {"celeba64", "celeba64-gan", "mnist32"} <= set(models)
    for name, path in models.items():
        m, card = load_file(path)
        nets = _networks(m, family.of_file(path).name)
        assert card["images_seen"] and card["dataset"] in name
        assert (path.parent / f"{name}.md").is_file() and (path.parent / f"{name}.png").is_file()
        for net in nets:  # half-precision storage: the weights are exactly representable in fp16
            w = next(net.parameters())
            assert torch.equal(w, w.half().float())
    assert family.of_file(models["celeba64"]).name == "rd" and load_rd(models["celeba64"])[0].config.size == 64
    assert load_generator(models["celeba64-gan"])[0].config.size == 64
    assert load_generator(models["mnist32"])[0].config.nc == 1


def test_gan_search_beats_the_prior_mean_on_a_real_face() -> None:
    """Few steps on a sample face with the shipped GAN-only model: a small file whose image is
    clearly closer to the input than the generator's image of the mean latent z = 0."""
    opts = EncodeOptions(model="celeba64-gan", loss="mse", steps=60, restarts=2, device="cpu")
    (r,) = encode_batch([SAMPLES / "astronaut.png"], opts)
    assert r.num_bytes <= 112
    g, _ = load_model("celeba64-gan")
    with torch.no_grad():
        mean_face = float_to_uint8(g(torch.zeros(1, g.config.nz)))[0]
    target = float_to_uint8(_prepared(g.config.crop))
    assert 10.0 <= r.psnr <= 45.0
    assert r.psnr >= psnr(mean_face, target).item() + 1.0
    assert torch.equal(decode_tensor(r.data), r.decoded)  # found by fingerprint, decoded exactly
    assert from_bytes(r.data).fingerprint == fingerprint(g)[:4]


def test_the_default_model_codes_a_real_face_far_better_than_the_gan_only_one() -> None:
    """The shipped rate-distortion model at its defaults: a version-2 file within the default
    cap, decoded exactly by fingerprint, much closer to the face than the GAN-only model's."""
    (r,) = encode_batch([SAMPLES / "astronaut.png"], EncodeOptions(device="cpu"))
    (gan,) = encode_batch([SAMPLES / "astronaut.png"], EncodeOptions(model="celeba64-gan", steps=60, device="cpu"))
    assert r.num_bytes <= DEFAULT_MAX_BYTES and r.quality is not None
    assert torch.equal(decode_tensor(r.data), r.decoded)
    assert r.psnr >= gan.psnr + 2.0 and r.ssim >= gan.ssim + 0.1


def test_the_shipped_quality_scale_spans_its_models_and_keeps_the_default() -> None:
    """celeba64's ladder: its fallback default is celeba64's level 4, the middle rungs belong
    to the model trained for more bytes, the top ones to the detail model; on a real face the
    top quality spends far more bytes, and gains PSNR, over the bottom one."""
    from codec.ladder import Rung, ladder_for
    from codec.pipeline import describe

    ladder = ladder_for("celeba64")
    assert ladder.rung(ladder.default) == Rung("celeba64", 4)
    assert ladder.models() == ["celeba64", "celeba64-id", "celeba64-detail3"]
    face = [SAMPLES / "astronaut.png"]
    low, high = (encode_batch(face, EncodeOptions(quality=q, device="cpu"))[0] for q in (1, len(ladder)))
    assert high.model == "celeba64-detail3" and high.num_bytes > 8 * low.num_bytes and high.psnr > low.psnr + 4.0
    info = describe(high.data)
    assert info["model"] == "celeba64-detail3" and info["quality"] == len(ladder) and info["scale"] == "celeba64"
    assert torch.equal(decode_tensor(high.data), high.decoded)


def test_a_kilobyte_cap_codes_the_face_with_its_detail() -> None:
    """--max-bytes 1024: per image the highest quality that fits, a rung of the detail model
    with the light (48-wide) entropy network: within the cap, far closer to the face than the
    default file, and decoded exactly."""
    from codec.pipeline import load_model

    assert load_model("celeba64-detail3")[0].detail.context[0].out_channels == 48
    face = [SAMPLES / "astronaut.png"]
    (small,) = encode_batch(face, EncodeOptions(device="cpu"))
    (big,) = encode_batch(face, EncodeOptions(max_bytes=1024, device="cpu"))
    assert big.model == "celeba64-detail3" and 600 < big.num_bytes <= 1024
    assert big.psnr > small.psnr + 4.0 and big.ssim > small.ssim + 0.1
    assert torch.equal(decode_tensor(big.data), big.decoded)


@pytest.mark.slow
def test_wheel_ships_the_models_for_a_non_editable_install(tmp_path) -> None:
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheel_dir), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if build.returncode != 0 and "No matching distribution" in build.stderr:
        pytest.skip("no package index reachable to build the wheel")
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheel_dir.glob("percodec-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(p.stem for p in (ROOT / "models").glob("*.safetensors"))  # every model the source tree holds
    assert {"celeba64", "celeba64-detail3", "celeba128", "mnist32"} <= set(shipped)
    for name in shipped:
        assert f"codec/models/{name}.safetensors" in names
    for ladder in (ROOT / "models").glob("*.ladder.json"):
        assert f"codec/models/{ladder.name}" in names
    assert "codec/models/manifest.json" in names
    for name in ("astronaut.png", "astronaut_photo.jpg", "grace_hopper.png"):  # bench --dataset samples
        assert f"codec/samples/{name}" in names
    zipfile.ZipFile(wheel).extractall(target)
    code = (
        "from codec.generator import shipped_models as s; m = s(); print(sorted(m)); print(m['celeba64']); "
        "from importlib import resources; print(sorted(p.name for p in resources.files('codec.samples').iterdir())); "
        "from codec.detailmodel import load_detail; print(load_detail(m['celeba64-detail3'])[0].fingerprint().hex())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert str(target) in done.stdout
    assert str(shipped) in done.stdout
    assert "'astronaut.png', 'astronaut_photo.jpg'" in done.stdout
    assert "e5665dbc8a22a952" in done.stdout  # a detail model finds the base it names beside it, installed


# A version-1 file of the shipped GAN-only model (astronaut sample, 100 steps), stored when it
# was called celeba64 and before its file gained framing metadata: it must keep decoding.
OLD_FILE = bytes.fromhex(
    "50470198c0674a066363680a35bee5a1affca806aec03c3ea7981300a1162367d6c992e10044b85d71648302006c5ccfc03d"
    "787f6df57c21658a8e8f043bd12112b6fe07f8d0ea9db706d4280d4ae781f14bad450831005569243a63b602d9ac0100df88"
)


def test_a_stored_old_file_still_decodes() -> None:
    from codec.align import read_framing
    from codec.generator import resolve_model

    assert read_framing(resolve_model("celeba64-gan")) is not None  # the framing is there ...
    decoded = decode_tensor(OLD_FILE)  # ... and outside the fingerprint the file names
    target = float_to_uint8(_prepared(1.0))
    assert decoded.shape == (3, 64, 64) and 12.0 <= psnr(decoded, target).item() <= 13.0


# A version-2 file of the first shipped rate-distortion model (astronaut sample, default
# settings: quality 4, 104 bytes), stored when that model was celeba64: whatever later model
# takes that name, files made with this one must keep decoding (found by fingerprint).
OLD_RD_FILE = bytes.fromhex(
    "504702056ade85037774b6161ab8f4b53871e7c57f3fbce00ccc495d60536598ec2fe6128f28f94cf521727b89c4936055e52dd1"
    "bf6fe9419e0a410afd0afd7768ef103ee61eff5d5a05a5bb88d4238dd12f353fc22888692096373c80bcfafef7bb86521bcb49d7"
)


def test_a_stored_rate_distortion_file_still_decodes() -> None:
    decoded = decode_tensor(OLD_RD_FILE)
    target = float_to_uint8(_prepared(1.0))
    assert decoded.shape == (3, 64, 64) and 20.5 <= psnr(decoded, target).item() <= 22.0  # 21.25 when stored


# A celeba64-hi2 file (astronaut sample, quality 9 when the scale's upper rungs were hi2's, 5
# steps): celeba64-hi2 left the scale for celeba64-id, and its files must keep decoding.
HI2_FILE = bytes.fromhex(
    "504702a958983902094d61e1416b91b6bd7b39f70ae683b2c27cf9b2e43b724c9ba06cd34a16d95ae4568e14fff8f4c45e"
    "22d964dd3815c6e53df5eba095885824c78ece7f3989ed3f8605c5c6f7d4b3dcf93a08b7b000cb0a0959e67d07aacf5ea4"
    "2b447f7cffc628d4633750126ac5ae3a0634389b5b656ccad26ae919316af3a6784f5add0073477a12e2c0ec35e7fd70ce"
    "6d08fd75e179050d55"
)


def test_a_file_of_the_model_that_left_the_scale_still_decodes() -> None:
    from codec.pipeline import describe

    assert describe(HI2_FILE)["model"] == "celeba64-hi2"
    img = decode_tensor(HI2_FILE)
    assert img.shape == (3, 64, 64) and abs(img.float().mean().item() - 142.96) < 0.5


# A celeba64-detail file (astronaut sample, its level 1, encoder only: 281 bytes), stored when
# the detail model joined the scale: the detail's side information is recomputed by the
# decoder in float64, so this pins that computation (and the tables) across machines.
DETAIL_FILE = bytes.fromhex(
    "504702591f3eed01c3d7d232c4ade2056814d2ef71f1ae7837b246d7ffbe69b098630d5c42e5128b6371207adcb8d86a23e7"
    "02b42822cb6678c7aaf5a5b6fdfb9c2606f42b77d7ad97d444aad3d9ac6585e1f6a76e66ad441fde26fa742efca657cbfab3"
    "aecc977b8ff3599c28d43401d2a279cbb78b8e2374685e505dd2f161a3111612f820d26a46046f83fc5cea9da537027b8681"
    "00f15dd10c8a5863e69b1e450e1cc434011c93106d1cdefd039204d31b44144bb9a0edcfaf159d8d6d3a8dcafd2864fa055d"
    "008e003ac78300f26026a918976ca4e27efd467153684b5ac328c7f0e1ae4c0c771e315dee243940f45845888baee1599281"
    "270ba0950023dfd8bada94640050d91b52c56136f23a844ed306ffeedf55a4"
)


def test_a_stored_detail_file_still_decodes() -> None:
    from codec.pipeline import describe

    assert describe(DETAIL_FILE)["model"] == "celeba64-detail"
    img = decode_tensor(DETAIL_FILE)
    target = float_to_uint8(_prepared(1.0))
    assert img.shape == (3, 64, 64) and abs(img.float().mean().item() - 141.29) < 0.5
    assert 24.8 <= psnr(img, target).item() <= 25.8  # 25.26 when stored


def test_encode_help_names_the_default_ladders_models() -> None:
    from click.testing import CliRunner

    from codec.cli import main
    from codec.ladder import ladder_for

    text = " ".join(CliRunner().invoke(main, ["encode", "--help"]).output.split())
    *rest, last = ladder_for("celeba64").models()
    assert "over the models " + ", ".join(rest) + " and " + last in text


def _prepared(crop: float) -> torch.Tensor:
    """The sample face as the model's input: (3, 64, 64) in [-1, 1], centre-cropped."""
    from codec.images import fit_to_model, open_image, to_tensor

    return to_tensor(fit_to_model(open_image(SAMPLES / "astronaut.png", 3), 64, crop))


def test_the_manifest_says_each_shipped_models_status_and_lineage_truly() -> None:
    """models/manifest.json: every shipped model, once; a model on a shipped scale is 'scale'
    and a 'scale' model is on one; lineage names shipped models, as the files' own cards and
    base references say."""
    import json

    from codec.generator import read_metadata
    from codec.ladder import shipped_ladders
    from codec.zoo import STATUSES, manifest

    models, entries = shipped_models(), manifest()
    assert set(entries) == set(models)
    on_scales = {Path(m).stem for ladder in shipped_ladders() for m in ladder.models()}
    for name, entry in entries.items():
        meta = read_metadata(models[name])
        assert entry["status"] in STATUSES and (entry["status"] == "scale") == (name in on_scales), name
        assert entry["family"] == family.of_file(models[name]).name, name
        start = json.loads(meta.get("card", "{}")).get("init_from")
        assert entry["from"] == (Path(start).stem if start else None), name
        assert json.loads(meta.get("base_model", "null")) == entry.get("base"), name


def test_the_models_command_lists_every_shipped_model_with_its_status() -> None:
    import json

    from click.testing import CliRunner

    from codec.cli import main

    r = CliRunner().invoke(main, ["models", "--json"])
    assert r.exit_code == 0, r.output
    rows = {m["name"]: m for m in json.loads(r.output)}
    assert set(rows) == set(shipped_models())
    assert rows["celeba64-detail3"]["status"] == "scale" and rows["celeba64-detail3"]["scales"] == ["celeba64"]
    assert rows["celeba64-detail3"]["base"] == "celeba64-id" and rows["celeba64-gan"]["levels"] is None
    text = CliRunner().invoke(main, ["models"]).output
    assert "retired" in text and "base celeba64-id" in text
