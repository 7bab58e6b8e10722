"""A re-entry clip made from a shared MOTChallenge sequence: everyone leaves, then comes back.

No shared sequence has such an absence, so one is built: the sequence's frames 1..cut, then
`gap_s` seconds of the empty scene (the per-pixel median of every frame: people move, the
background stays; blurred, so nothing in it is detected), then frames cut+1..end, with the
ground truth of the second part shifted by the gap. Every identity visible on both sides of the
cut is gone for `gap_s` seconds and comes back where it left, looking as it did: the tracker
loses it (nobody is detected in the gap) and only re-entry (tracking/reentry.py) can give it its
earlier ID. The same clip without the gap is the sequence itself, so IDF1 with and without the
gap compares like with like.

`python -m bench.gap_clip SEQ OUT [--cut N] [--gap-s S]` writes the clip's folder.
"""

from __future__ import annotations

import argparse
import configparser
import shutil
from pathlib import Path

import cv2
import numpy as np


def build_gap_clip(src: Path, dst: Path, cut: int | None = None, gap_s: float = 5.0) -> Path:
    """Write the clip as a MOTChallenge sequence folder at `dst` (replaced) and return it."""
    ini = configparser.ConfigParser()
    ini.optionxform = str  # type: ignore[assignment,method-assign]  # keep MOTChallenge's key case
    ini.read(src / "seqinfo.ini")
    seq = ini["Sequence"]
    n, fps, ext = int(seq["seqLength"]), float(seq["frameRate"]), seq.get("imExt", ".jpg")
    cut = cut or n // 2
    if not 0 < cut < n:
        raise ValueError(f"{src}: cut {cut} is not inside the sequence's {n} frames")
    gap = round(gap_s * fps)
    frames = [src / seq.get("imDir", "img1") / f"{i:06d}{ext}" for i in range(1, n + 1)]
    images: list[np.ndarray] = []
    for f in frames:
        img = cv2.imread(str(f))
        if img is None:
            raise ValueError(f"{f}: missing or unreadable")
        images.append(img)
    # blurred: people sitting behind a building's windows stay in the median and would be detected
    # (static, and not in the ground truth), turning the gap into hundreds of false positives
    background = cv2.GaussianBlur(np.median(np.stack(images), axis=0).astype(np.uint8), (0, 0), 8)
    if dst.exists():
        shutil.rmtree(dst)
    (dst / "img1").mkdir(parents=True)
    (dst / "gt").mkdir()
    for i, f in enumerate(frames, start=1):
        shutil.copyfile(f, dst / "img1" / f"{i + (gap if i > cut else 0):06d}{ext}")
    for i in range(cut + 1, cut + gap + 1):
        cv2.imwrite(str(dst / "img1" / f"{i:06d}{ext}"), background)
    gt = np.loadtxt(src / "gt" / "gt.txt", delimiter=",", ndmin=2)
    gt[gt[:, 0] > cut, 0] += gap
    np.savetxt(dst / "gt" / "gt.txt", gt, delimiter=",", fmt="%g")
    seq["seqLength"] = str(n + gap)
    seq["name"] = dst.name
    with open(dst / "seqinfo.ini", "w") as fh:
        ini.write(fh)
    return dst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gap_clip", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sequence", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--cut", type=int, default=None, help="last frame before the gap (default: the middle)")
    p.add_argument("--gap-s", type=float, default=5.0)
    args = p.parse_args(argv)
    print(build_gap_clip(args.sequence, args.out, args.cut, args.gap_s))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
