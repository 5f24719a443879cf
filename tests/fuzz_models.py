"""Fuzz the model-file and ladder readers: tiny valid model files of every kind (GAN-only
generator, rate-distortion, detail) and a ladder, with their metadata values, tensors and
JSON mutated, must either load or raise ModelError; anything else (another exception, a
model with non-finite weights, a hang) is a bug.

    python tests/fuzz_models.py --iterations 2000
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from codec.detail import DetailConfig, DetailNet  # noqa: E402
from codec.detailmodel import load_detail, save_detail, share_base  # noqa: E402
from codec.errors import ModelError  # noqa: E402
from codec.generator import Generator, ModelConfig, load_generator, save_generator, write_model_file  # noqa: E402
from codec.ladder import read_ladder  # noqa: E402
from codec.rdmodel import RDModel, load_rd, save_rd  # noqa: E402

CONFIG = ModelConfig(nz=8, ngf=4, ndf=4, nc=3, size=16)
DETAIL = DetailConfig(channels=4, width=16, levels=3)
#: Kinds of seed file and their loaders; "shared" is a detail model naming its base (rd.safetensors beside it).
LOADERS = {"generator": load_generator, "rd": load_rd, "detail": load_detail, "shared": load_detail}

#: Values a mutation puts in place of a JSON value: wrong types, huge, negative, non-finite.
ODD_VALUES = [None, True, False, 0, -1, 1, 3.7, 1e308, -1e308, 2**70, 4096, 10**8, "", "abc", [], {}, [[]], [1, 2],
              [0.0], [-1.0], "Infinity", float("nan"), float("inf")]  # fmt: skip


def seed_files(folder: Path) -> dict[str, Path]:
    """One tiny valid file of each kind in `folder`, and a ladder over the RD one."""
    torch.manual_seed(0)
    paths = {k: folder / f"{k}.safetensors" for k in LOADERS}
    save_generator(Generator(CONFIG).eval(), paths["generator"], {"dataset": "none"})
    rd = RDModel(CONFIG).eval()
    with torch.no_grad():  # a narrow prior: tables of a few symbols, fast to build
        rd.prior.matrices[0].add_(2.0)
    save_rd(rd, paths["rd"], {"dataset": "none"})
    save_detail(rd, DetailNet(DETAIL, rd.generator), paths["detail"], {"dataset": "none"}, global_levels=(2, 4))
    paths["shared"].write_bytes(paths["detail"].read_bytes())
    share_base(paths["shared"], "rd")
    paths["ladder"] = folder / "tiny.ladder.json"
    paths["ladder"].write_text(json.dumps({"default": 2, "rungs": [["rd.safetensors", 1], ["rd.safetensors", 3]]}))
    return paths


def _mutate_json(value: object, rng: random.Random) -> object:
    """`value` with one element somewhere replaced, dropped or added."""
    if isinstance(value, dict | list) and value and rng.random() < 0.7:
        out = dict(value) if isinstance(value, dict) else list(value)
        key = rng.choice(list(out)) if isinstance(out, dict) else rng.randrange(len(out))
        op = rng.randrange(3)
        if op == 0:
            del out[key]
        elif op == 1:
            out[key] = _mutate_json(out[key], rng)
        elif isinstance(out, dict):
            out[rng.choice(["extra", "size", "nz", "levels"])] = rng.choice(ODD_VALUES)
        else:
            out.append(rng.choice(ODD_VALUES))
        return out
    return rng.choice(ODD_VALUES)


def _mutate_text(text: str, rng: random.Random) -> str:
    if rng.random() < 0.8:
        try:
            return json.dumps(_mutate_json(json.loads(text), rng))
        except (ValueError, RecursionError):  # text an earlier mutation broke
            pass
    i = rng.randrange(len(text) + 1)
    return text[:i] + rng.choice(["", "[" * 5000, "}", "Infinity", "\\u0000", "1e999"]) + text[i + 1 :]


def mutate_model(meta: dict[str, str], state: dict[str, torch.Tensor], rng: random.Random) -> None:
    """Mutate a model's metadata and tensors in place (1-3 changes)."""
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(5)
        if op <= 1 and meta:
            key = rng.choice(list(meta))
            meta[key] = _mutate_text(meta[key], rng)
            if key == "base_model" and rng.random() < 0.5:  # another file of the folder, or outside it
                meta[key] = json.dumps(rng.choice(["detail", "generator", "../rd", "celeba64", "rd.safetensors"]))
        elif op == 2 and meta:
            del meta[rng.choice(list(meta))]
        elif op == 3 and state:
            name = rng.choice(list(state))
            t = state[name]
            if t.is_floating_point() and t.numel() and rng.random() < 0.5:
                t = t.clone()
                t.view(-1)[rng.randrange(t.numel())] = rng.choice([float("nan"), float("inf"), 1e30])
                state[name] = t
            elif t.numel() > 1:
                state[name] = t.flatten()[: rng.randrange(1, t.numel())]
            else:
                del state[name]
        else:
            meta["percodec_model"] = rng.choice(["1", "rd", "rd-detail", "x"])


def check_model(path: Path, kind: str) -> str:
    """'ok' or 'refused'; raises anything else."""
    try:
        model, _ = LOADERS[kind](path)
    except ModelError:
        return "refused"
    for name, t in model.state_dict().items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise AssertionError(f"{path}: loaded with non-finite {name}")
    return "ok"


def check_ladder(path: Path) -> str:
    try:
        read_ladder(path)
    except ModelError:
        return "refused"
    return "ok"


def fuzz(iterations: int, seed: int, folder: Path) -> dict[str, int]:
    """Mutate and load `iterations` files; counts of outcomes. Raises on the first bug."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    rng = random.Random(seed)
    seeds = seed_files(folder)
    originals = {}
    for kind in LOADERS:
        with safe_open(str(seeds[kind]), framework="pt") as f:
            originals[kind] = dict(f.metadata())
        originals[kind] = (originals[kind], load_file(str(seeds[kind])))
    ladder_text = seeds["ladder"].read_text()
    counts = {"ok": 0, "refused": 0}
    for i in range(iterations):
        kind = rng.choice([*LOADERS, "ladder"])
        if kind == "ladder":
            path = folder / f"m{i}.ladder.json"
            path.write_text(_mutate_text(ladder_text, rng))
            outcome = check_ladder(path)
        else:
            meta, state = dict(originals[kind][0]), dict(originals[kind][1])
            mutate_model(meta, state, rng)
            path = folder / f"m{i}.safetensors"
            write_model_file(path, state, meta)
            outcome = check_model(path, kind)
        path.unlink()
        counts[outcome] += 1
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        counts = fuzz(a.iterations, a.seed, Path(tmp))
    print(f"{a.iterations} mutated model files and ladders: {counts['ok']} loaded, {counts['refused']} refused "
          f"in one error each; no other outcome ({time.perf_counter() - t0:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
