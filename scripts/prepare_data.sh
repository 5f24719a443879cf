#!/usr/bin/env bash
# Build the larger face data root outside the repository from snapshots (git directories) of the
# public repositories named in ../shared/datasets/README.md, "More faces". Never commit the result.
#
#   scripts/prepare_data.sh MIRROR OUT
#
# MIRROR holds one git directory per repository, named OWNER+NAME/repo (what the tool library's
# `fetch` writes: /work/.mirror); OUT is the data root (e.g. ~/data). Each part is skipped when its
# folder already exists, so a run that stopped can be run again. It writes:
#   OUT/celeba/          CelebA, 3x (train 50,213 / valid 6,111 / test 5,186), --data-root OUT
#   OUT/utkface/         UTKFace, 23,707 tight 200x200 crops (age_gender_race_date.jpg.chip.jpg)
#   OUT/all-age-faces/   All-Age-Faces, 13,322 aligned faces (ages 2-80)
#   OUT/celeba-wild/     6,300 full photos of 299 CelebA identities, named by CelebA id
#   OUT/celeba-wild-test/  links PERSON/PHOTO to those of CelebA's test people (1,045 photos of 58)
set -euo pipefail
[ $# -eq 2 ] || { sed -n 2,15p "$0" >&2; exit 2; }
mirror=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
shared=${SHARED:-$here/../../shared}

snapshot() {  # the git directory of OWNER+NAME, or a one-line error
  local dir="$mirror/$1/repo"
  git -C "$dir" rev-parse --git-dir >/dev/null 2>&1 || { echo "prepare_data: no snapshot of $1 at $dir" >&2; exit 1; }
  echo "$dir"
}

extract() {  # extract COMMIT:FOLDER of a snapshot into DEST (atomically: into DEST.part, then renamed)
  local git_dir=$1 tree=$2 dest=$3
  if [ -d "$dest" ]; then echo "prepare_data: $dest exists, kept"; return; fi
  rm -rf "$dest.part" && mkdir -p "$dest.part"
  git -C "$git_dir" archive "$tree" | tar -x -C "$dest.part"
  mv "$dest.part" "$dest"
  echo "prepare_data: $dest: $(find "$dest" -type f | wc -l) files"
}

mkdir -p "$out"
if [ -f "$out/celeba/list_eval_partition.txt" ]; then
  echo "prepare_data: $out/celeba exists, kept"
else
  python3 "$shared/datasets/extend_celeba.py" "$(snapshot ShaharKSegal+CelebA_Samples)" "$out"
fi
extract "$(snapshot mattans+AgeProgression)" \
  2d937c615a3d10408db0ea795842e569bc9eedb0:data/UTKFace/unlabeled "$out/utkface"
extract "$(snapshot middleyuan+All-Age-Faces-Dataset)" \
  "28741a75e2efb7a2f96e13d4beb58411536f473d:All-Age-Faces Dataset/aglined faces" "$out/all-age-faces"
extract "$(snapshot matush97+faceRecognition)" \
  e7ba6c0951ace22b43ef32fc903a7dae1babe55d:Celeb "$out/celeba-wild"

# The in-the-wild photos of CelebA *test* people (ids 182638-199546; the ids above are kept for
# evaluation outside the project) as PERSON/PHOTO links, what benchmarks/photo_verify.py reads.
if [ -d "$out/celeba-wild-test" ]; then
  echo "prepare_data: $out/celeba-wild-test exists, kept"
else
  git -C "$(snapshot ShaharKSegal+CelebA_Samples)" show 2a68dac53f1a175a4716f615d7f096c8a6122482:identity_CelebA.txt |
    python3 -c '
import os, sys
wild, dest = sys.argv[1], sys.argv[2]
ident = dict(line.split() for line in sys.stdin if line.strip())
n = 0
for name in sorted(os.listdir(wild)):
    stem = name.rsplit(".", 1)[0]
    if stem.isdigit() and 182638 <= int(stem) <= 199546 and name in ident:
        os.makedirs(os.path.join(dest + ".part", ident[name]), exist_ok=True)
        os.symlink(os.path.join(wild, name), os.path.join(dest + ".part", ident[name], name))
        n += 1
os.rename(dest + ".part", dest)
print(f"prepare_data: {dest}: {n} photos of {len(os.listdir(dest))} test people")
' "$out/celeba-wild" "$out/celeba-wild-test"
fi
