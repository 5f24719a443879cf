"""Write tests/data/stored/: a file of every shipped model, made by this version of the code,
and the image each decodes to (NAME.png beside NAME.pgz). tests/test_stored.py decodes them
with every later version: a model file rewritten (levels added, networks shared with
another model) must still decode every file made before, to the same pixels (within one
level: float kernels differ a little between CPUs).

    python tests/data/make_stored.py     # only to add a newly shipped model's files

The photo is samples/astronaut.png (redistributable); each RD model's lowest and highest
level, a detail model's too, a GAN-only model one short search; and one celeba64 file as it
was written before its levels 9-11 were added (its old fingerprint in the header).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from codec import container, family
from codec.container import FINGERPRINT_BYTES
from codec.generator import shipped_models
from codec.pipeline import EncodeOptions, decode_tensor, encode_batch

HERE = Path(__file__).resolve().parent / "stored"
PHOTO = Path(__file__).resolve().parents[2] / "samples" / "astronaut.png"


def write(out: Path, data: bytes) -> None:
    """The file and the image it decodes to; a file stored before is never remade (it stands
    for the version that made it)."""
    out.write_bytes(data)
    image = decode_tensor(data).permute(1, 2, 0).numpy()
    Image.fromarray(image[..., 0] if image.shape[2] == 1 else image).save(out.with_suffix(".png"))


def main() -> None:
    for name, path in sorted(shipped_models().items()):
        levels = family.level_count(path)
        settings = [("", {"steps": 20, "restarts": 1})] if levels is None else [
            (f"-level{lv}", {"quality": lv, "steps": 4}) for lv in (1, levels)]  # fmt: skip
        for suffix, opts in settings:
            out = HERE / f"{name}{suffix}.pgz"
            if not out.is_file():
                (r,) = encode_batch([PHOTO], EncodeOptions(model=str(path), **opts))
                write(out, r.data)
    old = HERE / "celeba64-level3-before-levels-9-11.pgz"
    if not old.is_file():
        from codec.zoo import load_model

        m, _ = load_model("celeba64")
        (r,) = encode_batch([PHOTO], EncodeOptions(model=str(shipped_models()["celeba64"]), quality=3, steps=4))
        c = container.from_bytes(r.data)
        c = type(c)(m.fingerprint(8)[:FINGERPRINT_BYTES], c.level, c.payload)
        write(old, container.to_bytes(c))
    print(f"{len(list(HERE.glob('*.pgz')))} stored files in {HERE}")


if __name__ == "__main__":
    main()
