"""Recreate samples/*.png from public-domain images shipped inside registry packages.

astronaut.png: Eileen Collins (NASA, public domain), from scikit-image's data folder.
grace_hopper.png: Grace Hopper (US Navy, public domain), from matplotlib's sample data.
Each is a square crop around the face, framed like CelebA's aligned faces, resized to
64x64 with the same bicubic filter percodec uses. astronaut_photo.jpg is the whole,
uncropped 512x512 astronaut portrait (face off-centre), for `make demo`: percodec finds and
frames the face itself. Run: python samples/make_samples.py
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import skimage
from PIL import Image

HERE = Path(__file__).resolve().parent
SOURCES = {
    "astronaut.png": (Path(os.path.dirname(skimage.__file__)) / "data" / "astronaut.png", (172, 62, 298, 188)),
    "grace_hopper.png": (Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg", (175, 115, 345, 285)),
}

if __name__ == "__main__":
    for name, (src, box) in SOURCES.items():
        img = Image.open(src).convert("RGB").crop(box).resize((64, 64), Image.Resampling.BICUBIC)
        img.save(HERE / name, optimize=True)
        print(f"wrote {HERE / name}")
    photo = SOURCES["astronaut.png"][0]
    Image.open(photo).convert("RGB").save(HERE / "astronaut_photo.jpg", quality=90, optimize=True)
    print(f"wrote {HERE / 'astronaut_photo.jpg'}")
