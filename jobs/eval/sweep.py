"""`vidtrack eval SEQ... --sweep tracker.max_age_s=0.5,1,2 --sweep refine.stitch_max_gap_s=1,2,4`:
detect and embed each sequence once (the detections stage), then track again from it for every
combination of the swept values (no decode, no model), score each with TrackEval and print one
table, best first (HOTA, then IDF1), also written as CSV or Parquet with `--sweep-out`."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jobs.config import load_config, parse_override
from tracking.config import ConfigError, PipelineConfig

log = logging.getLogger("vidtrack." + __name__)

# What a sweep may change: parameters applied after detection. Detector and embedder settings
# change the detections themselves (sweep those with separate `vidtrack eval` runs).
SWEEPABLE = ("tracker", "refine", "output")


def parse_sweeps(items: Sequence[str]) -> dict[str, list[str]]:
    """['tracker.max_age_s=0.5,1'] -> {'tracker.max_age_s': ['0.5', '1']}, checked."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        section, _, _ = key.partition(".")
        if not sep or not values:
            raise ConfigError(f"--sweep {item!r}: expected section.key=v1,v2,...")
        if section not in SWEEPABLE:
            raise ConfigError(f"--sweep {item!r}: only {', '.join(SWEEPABLE)} settings can be swept from one "
                              "detection pass (detector and embedder settings change the detections)")
        grid[key.strip()] = [v.strip() for v in values.split(",") if v.strip()]
        parse_override(f"{key}={grid[key.strip()][0]}")  # a malformed key fails here, naming it
    return grid


def combinations(grid: dict[str, list[str]]) -> list[list[str]]:
    """Every combination as a list of `--set` overrides."""
    keys = list(grid)
    return [[f"{k}={v}" for k, v in zip(keys, values, strict=True)] for values in itertools.product(*grid.values())]


def run_sweep(args: Any, base: PipelineConfig, sequences: list[Any], models: Any,
              params_id: str) -> list[dict[str, Any]]:
    """Score every combination on the sequences; rows sorted best first."""
    from tracking.mot import evaluate_many, tracks_to_mot
    from tracking.pipeline import VideoOutputs, process_video, retrack_video

    combos = combinations(parse_sweeps(args.sweep))
    configs = [load_config(args.config, [*args.overrides, *combo]) for combo in combos]  # all checked up front
    rows = []
    with tempfile.TemporaryDirectory(prefix="vidtrack-sweep-") as tmp:
        out = Path(args.out or tmp)
        detections: dict[str, Path] = {}
        for seq in sequences:  # the expensive part, once per sequence
            detect = seq.public_detect_fn() if args.detections == "public" else None
            outputs = dataclasses.replace(VideoOutputs.in_dir(out / "full", seq.name, annotated=False),
                                          detections=out / f"{seq.name}.detections.parquet")
            process_video(seq.source, outputs, _no_video(base), models, video_id=seq.name, params_id=params_id,
                          detect=detect, detections_id=params_id)
            detections[seq.name] = out / f"{seq.name}.detections.parquet"
        results: dict[str, dict[str, Path]] = {}
        for i, cfg in enumerate(configs):  # tracking only, from the detections
            results[f"combo{i}"] = {}
            for seq in sequences:
                re = VideoOutputs.in_dir(out / f"combo{i}", seq.name, annotated=False)
                retrack_video(detections[seq.name], re, _no_video(cfg), detections_id=params_id, video_id=seq.name)
                results[f"combo{i}"][seq.name] = out / f"combo{i}" / f"{seq.name}.mot.txt"
                tracks_to_mot(re.tracks, results[f"combo{i}"][seq.name], matched_only=not args.all_boxes)
        scored = evaluate_many(results, sequences)  # one TrackEval run: the ground truth is read once
    for i, combo in enumerate(combos):
        sc = scored[f"combo{i}"].get("COMBINED") or next(iter(scored[f"combo{i}"].values()))
        rows.append({"combination": " ".join(combo), "hota": round(sc.hota, 2), "mota": round(sc.mota, 2),
                     "idf1": round(sc.idf1, 2), "idsw": sc.id_switches})
    return sorted(rows, key=lambda r: (-r["hota"], -r["idf1"], r["combination"]))


def _no_video(cfg: PipelineConfig) -> PipelineConfig:
    return dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, annotated_video=False))


def print_table(rows: list[dict[str, Any]]) -> None:
    width = max([len("combination"), *(len(r["combination"]) for r in rows)])
    print(f"{'combination':<{width}}  {'HOTA':>6}  {'MOTA':>6}  {'IDF1':>6}  {'IDSW':>5}")
    for r in rows:
        print(f"{r['combination']:<{width}}  {r['hota']:6.2f}  {r['mota']:6.2f}  {r['idf1']:6.2f}  {r['idsw']:5d}")


def write_table(rows: list[dict[str, Any]], path: Path) -> None:
    """CSV, or Parquet when the name ends in .parquet."""
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
        return
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
