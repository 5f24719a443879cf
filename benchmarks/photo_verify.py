"""Cross-photo verification on your own photos: a folder of PERSON/PHOTO files.

    python benchmarks/photo_verify.py PHOTOS [--out runs/photo-verify] [--model celeba64] [--max-bytes 520]

Every photo is framed as `encode` frames it (the face found and aligned), coded at encode's
defaults (and at each --max-bytes) beside the bench's baselines at the same bytes, and each decoded face is verified
against the person's *other* photos (originals) and against photos of the other people
(codec.verify; identity = the photo's folder name, so a person needs two photos or more).
Writes OUT/identities.txt and the bench's outputs; prints the verification table, by dlib and,
where it has been fetched (`make judge`), by the held-out judge. With only
a few people the impostor pairs are few and the thresholds coarse: read it as a check, not
as a figure.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from codec.bench import BenchConfig, protocols_for, run, verification_table, write_outputs
from codec.fileio import folder_files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", type=Path, help="folder of PERSON/PHOTO image files")
    ap.add_argument("--out", default="runs/photo-verify")
    ap.add_argument("--model", default="celeba64")
    ap.add_argument("--max-bytes", type=int, action="append", default=[], help="also a row at this cap")
    args = ap.parse_args()
    from codec.defaults import RD_LOSS

    files = [f.relative_to(args.photos) for f in folder_files(args.photos)]
    people = {f.parent.as_posix() for f in files if f.parent.as_posix() != "."}
    if len(people) < 2:
        raise SystemExit(f"{args.photos}: expected one folder per person (two people or more), found {len(people)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ids = out / "identities.txt"
    ids.write_text("".join(f"{f.as_posix()} {f.parent.as_posix()}\n" for f in files if f.parent.as_posix() != "."))
    cfg = BenchConfig(dataset="folder", data_root=str(args.photos), split="all", model=args.model,
                      losses=(RD_LOSS,), identities=str(ids), out=str(out), sweep=False, reference=None,
                      max_bytes=tuple(args.max_bytes))  # fmt: skip
    _, summary = write_outputs(cfg, run(cfg, progress=True))
    protocols = protocols_for(cfg)
    if "dlib" not in protocols:
        raise SystemExit("no person has two photos with a face dlib can describe: nothing to verify")
    for by, protocol in protocols.items():  # dlib's first, then each judge fetched
        print(verification_table(summary, protocol, by))


if __name__ == "__main__":
    from codec.cli import friendly_errors  # a missing data folder is one line, not a traceback

    friendly_errors(main)()
