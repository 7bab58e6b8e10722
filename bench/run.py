"""`vidtrack-bench` (or `python -m bench`): vidtrack against the naive pipeline on the same video and model.

Each contender runs in its own subprocess (so peak RSS is its own), on the same input:
  naive            ../shared/bench/seed_pipeline.py (YOLO + deep-sort-realtime, one frame at a time)
  decode+detect    vidtrack's decoder and detector alone, same backend, batch and imgsz
  vidtrack         the full pipeline (decode, detect, embed, track, Parquet, annotated H.264)
  vidtrack-plain   the unaccelerated path (torch embedder, detector batch 1): the accuracy reference
and prints one line each (frames/s, seconds, peak RSS) plus the ratios, and IDF1 on the
sequence's ground truth when it has one (TUD-Campus does).

    vidtrack-bench --model ../shared/models/yolov8n.pt            # TUD-Campus as a video
    vidtrack-bench --process                                       # whole processes, start-up included
    vidtrack-bench --costs                                         # ms per crop / frame of each option
    vidtrack-bench --reid                                          # re-ID AUC of each appearance option
    vidtrack-bench --retrack                                       # full runs vs re-tracking runs, whole processes
    vidtrack-bench --memory --frames 5000 --set detector.imgsz=320  # flat-memory check on a long video
    vidtrack-bench --gpu                                           # NVIDIA GPUs, 1/2/4 workers each (bench/gpu.py)

Every line starts with the CPU it ran on (model; bf16, VNNI, AMX found or not): vidtrack's CPU
inference is fp32 (or int8 when asked) whatever the CPU, so its numbers do not lean on bf16.
Paths given on the command line are made absolute before any child process sees them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIDTRACK_SHARED", REPO.parent / "shared"))
os.environ.setdefault("VIDTRACK_MODELS", str(SHARED / "models" / "reid"))  # the default re-ID network, by name
REID_OPTIONS: list[str] = [str(SHARED / "models" / "reid" / f"person-reidentification-retail-{n}.xml")
                           for n in ("0288", "0287")]


def add_bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=str(SHARED / "models" / "yolov8n.pt"),
                   help="detector model file (made absolute) or an ultralytics model name")
    p.add_argument("--sequence", type=Path, default=SHARED / "data" / "mot" / "TUD-Campus",
                   help="MOTChallenge sequence (encoded to H.264 first) or a video file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="vidtrack parameters for the vidtrack runs (imgsz applies to all contenders)")
    p.add_argument("--only", action="append", choices=("naive", "naive-detect", "detect", "vidtrack", "plain"),
                   help="run only these contenders (repeatable)")
    p.add_argument("--process", action="store_true",
                   help="whole processes instead: `vidtrack track` vs the naive script, start-up included, on the "
                        "sequence and on --clip; and time to first frame")
    p.add_argument("--clip", type=Path, default=SHARED / "data" / "videos" / "one-by-one-person-detection.mp4",
                   help="the long video for --process")
    p.add_argument("--costs", action="store_true",
                   help="cost per crop of each appearance option and per frame of each detector precision, "
                        "interleaved in one process")
    p.add_argument("--reid", action="store_true",
                   help="how well each appearance option tells people apart: ROC AUC of cosine distances on every "
                        "shared sequence's ground-truth boxes (no tracker)")
    p.add_argument("--memory", action="store_true", help="flat-memory check on a long looped video instead")
    p.add_argument("--frames", type=int, default=5000, help="frames for --memory")
    p.add_argument("--scaling", action="store_true",
                   help="the Ray job on a simulated 2-node cluster: 1 actor vs 2 actors on the same archive")
    p.add_argument("--videos", type=int, default=8, help="archive size for --scaling")
    p.add_argument("--repeat", type=int, default=1,
                   help="run the contenders round-robin this many times and keep each one's fastest run "
                        "(on a shared machine, load only ever adds time)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--naive-scores", action="store_true",
                   help="IDF1/HOTA/MOTA of the naive pipeline (seed_pipeline.py, unmodified) on every shared "
                        "sequence with ground truth (bench/naive_scores.py); --json sets the file")
    p.add_argument("--count", action="store_true", help="vidtrack count over a synthetic 10-million-row dataset "
                                                        "(bench/count_bench.py)")
    p.add_argument("--plan", action="store_true", help="requests and seconds of a rerun's plan over 10,000 and "
                                                       "100,000 done videos on a moto server (bench/plan_bench.py)")
    p.add_argument("--retrack", action="store_true", help="whole `vidtrack run` processes: full runs against "
                                                          "re-tracking runs from the detections stage, on the "
                                                          "shared clips cut to 400 frames (bench/retrack_bench.py)")


# -- one contender per subprocess ---------------------------------------------------------

def _child(argv: list[str]) -> int:
    """Entry point of a contender subprocess: prints one JSON line with its results."""
    kind, video, model, out = argv[0], argv[1], argv[2], Path(argv[3])
    overrides = json.loads(argv[4])
    from jobs.config import load_config

    cfg = load_config(None, [f"detector.model={model}", *overrides])
    runners = {"naive-detect": _naive_detect, "detect": _own_detect, "vidtrack": _vidtrack}
    result = runners[kind](cfg, video, out)
    import resource

    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("BENCH " + json.dumps(result))
    return 0


def _naive_detect(cfg: Any, video: str, out: Path) -> dict[str, Any]:
    """The issue's "decoding plus YOLO alone": cv2 decode, one ultralytics (torch) call per frame."""
    import cv2
    import numpy as np
    from ultralytics import YOLO

    yolo = YOLO(cfg.detector.model)
    yolo.predict(np.full((480, 640, 3), 114, "uint8"), verbose=False)  # warm-up
    t0 = time.perf_counter()
    cap = cv2.VideoCapture(video)
    n = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        yolo.predict(img, imgsz=cfg.detector.imgsz, verbose=False)
        n += 1
    return {"frames": n, "seconds": time.perf_counter() - t0}


def _own_detect(cfg: Any, video: str, out: Path) -> dict[str, Any]:
    """vidtrack's decoder and detector alone, same backend, batch and imgsz as the full pipeline."""
    from tracking.detector import Detector
    from tracking.video import VideoReader

    det = Detector(cfg.detector)
    t0 = time.perf_counter()
    n = 0
    with VideoReader(video) as reader:
        batch = []
        for frame in reader:
            batch.append(frame.bgr)
            if len(batch) == cfg.detector.batch_size:
                n += len(det(batch))
                batch = []
        n += len(det(batch))
    return {"frames": n, "seconds": time.perf_counter() - t0}


class _CountingEmbedder:
    """Wraps the embedder to count crops, so the bench can state embedding cost per crop."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.crops = inner, 0

    def __call__(self, frames: list[Any], dets: list[Any]) -> Any:
        self.crops += sum(len(d) for d in dets)
        return self.inner(frames, dets)


def _vidtrack(cfg: Any, video: str, out: Path) -> dict[str, Any]:
    """The full pipeline (decode, detect, embed, track, Parquet, annotated H.264); models loaded
    and warmed up first, as an actor does once."""
    from tracking.pipeline import Models, VideoOutputs, process_video

    t0 = time.perf_counter()
    models = Models.load(cfg)
    load_s = time.perf_counter() - t0
    counter = _CountingEmbedder(models.embedder)
    models.embedder = counter  # type: ignore[assignment]
    outputs = VideoOutputs(out / "tracks.parquet", out / "annotated.mp4", None)
    t0 = time.perf_counter()
    s = process_video(video, outputs, cfg, models, video_id="bench")
    return {"frames": s.frames, "seconds": time.perf_counter() - t0, "stages": s.stage_seconds,
            "tracks": str(outputs.tracks), "crops": counter.crops, "load_seconds": load_s}


def _run_child(kind: str, video: Path, model: str, out: Path, overrides: list[str]) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "bench.run", "--child", kind, str(video), model, str(out), json.dumps(overrides)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"bench contender {kind} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return dict(json.loads(line[len("BENCH "):]))


def _run_naive(video: Path, model: str, out: Path, imgsz: int) -> dict[str, Any]:
    """The seed pipeline as users run it; its own timer covers decode to write."""
    seed = SHARED / "bench" / "seed_pipeline.py"
    out.mkdir(parents=True, exist_ok=True)
    wrapper = (
        "import resource, runpy, sys, json; from ultralytics import YOLO\n"
        f"_p = YOLO.predict; YOLO.predict = lambda self, *a, **k: _p(self, *a, **{{'imgsz': {imgsz}, **k}})\n"
        # warm the model up when it is built, as vidtrack's Models.load does, so neither side times setup
        "import numpy as np; _i = YOLO.__init__\n"
        "def _init(self, *a, **k):\n"
        "    _i(self, *a, **k); self.predict(np.full((480, 640, 3), 114, np.uint8), verbose=False)\n"
        "YOLO.__init__ = _init\n"
        f"sys.argv = {[str(seed), model, str(video), str(out / 'naive.mp4'), str(10**9), str(out / 'naive.csv')]!r}\n"
        f"runpy.run_path({str(seed)!r}, run_name='__main__')\n"
        "print('BENCH_RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    proc = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, cwd=out, check=False)
    lines = proc.stdout.splitlines()
    last = next((ln for ln in lines if ln.startswith("frames=")), None)
    rss = next((ln for ln in lines if ln.startswith("BENCH_RSS")), None)
    if proc.returncode != 0 or last is None or rss is None:
        raise RuntimeError(f"naive pipeline failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    kv = dict(item.split("=") for item in last.split())
    return {"frames": int(kv["frames"]), "seconds": float(kv["seconds"]), "peak_rss_mb": float(rss.split()[1]),
            "mot": str(out / "naive.csv")}


# -- accuracy ---------------------------------------------------------------------------

def _idf1(sequence: Path, tracks: str | None = None, mot_txt: str | None = None) -> float | None:
    from tracking.mot import MotSequence, evaluate, tracks_to_mot

    if not (sequence / "gt" / "gt.txt").exists() or not (tracks or mot_txt):
        return None
    seq = MotSequence.open(sequence)
    with tempfile.TemporaryDirectory() as tmp:
        res = Path(tmp) / "res.txt"
        if tracks:
            tracks_to_mot(tracks, res, matched_only=True, class_id=0)
        elif mot_txt:
            res.write_text(Path(mot_txt).read_text())
        return evaluate({seq.name: res}, [seq])[seq.name].idf1


# -- input --------------------------------------------------------------------------------

def _as_video(sequence: Path, tmp: Path, loop_to: int | None = None) -> Path:
    """A MOTChallenge img1/ folder (or a video) as an H.264 mp4, optionally looped to `loop_to` frames."""
    from tracking.mot import MotSequence
    from tracking.video import VideoReader, VideoSink

    src = MotSequence.open(sequence).source if sequence.is_dir() else sequence
    with VideoReader(src) as r:
        info = r.info
        frames = [f.bgr for f in r]
    n = loop_to or len(frames)
    dst = tmp / f"{sequence.stem}{'-loop' if loop_to else ''}.mp4"
    with VideoSink(dst, info.width, info.height, info.fps or 25.0, crf=20, preset="veryfast") as sink:
        for i in range(n):
            sink.write(frames[i % len(frames)])
    return dst


def _rss_sampler(pid: int, interval: float, samples: list[tuple[float, float]]) -> Any:
    import threading

    import psutil

    stop = threading.Event()

    def run() -> None:
        p = psutil.Process(pid)
        t0 = time.perf_counter()
        while not stop.is_set():
            try:
                samples.append((time.perf_counter() - t0, p.memory_info().rss / 2**20))
            except psutil.NoSuchProcess:
                return
            time.sleep(interval)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return stop


def _memory(args: argparse.Namespace) -> int:
    """Process a long looped video in a subprocess, sampling its RSS; compare the peak of the
    first and last tenth of the run."""
    with tempfile.TemporaryDirectory(prefix="vidtrack-bench-") as tmp:
        video = _as_video(args.sequence, Path(tmp), loop_to=args.frames)  # people keep entering and leaving
        cmd = [sys.executable, "-m", "bench.run", "--child", "vidtrack", str(video), args.model, str(Path(tmp) / "o"),
               json.dumps(args.overrides)]
        samples: list[tuple[float, float]] = []
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stop = _rss_sampler(proc.pid, 0.5, samples)
        out, err = proc.communicate()
        stop.set()
        line = next((ln for ln in out.splitlines() if ln.startswith("BENCH ")), None)
        if proc.returncode != 0 or line is None:
            raise RuntimeError(f"memory run failed:\n{err[-4000:]}")
        r = json.loads(line[6:])
    # the model loads during the first seconds: tenths are of the processing span only. The span
    # ends with refinement, the Parquet and the render pass (a second decoder and the H.264
    # encoder, a fixed cost whatever the length): growth with the video is judged on the tracking
    # pass, the render pass's peak is shown on its own.
    t_end = samples[-1][0]
    t_start = t_end - r["seconds"]
    stages = r.get("stages", {})
    t_track_end = t_end - sum(stages.get(k, 0.0) for k in ("encode", "write", "refine"))
    span = [(t, m) for t, m in samples if t_start <= t <= t_track_end]
    tenth = (t_track_end - t_start) / 10
    tenths = [max((m for t, m in span if t_start + k * tenth <= t <= t_start + (k + 1) * tenth), default=0.0)
              for k in range(10)]
    render = max((m for t, m in samples if t > t_track_end), default=0.0)
    print(f"memory: {r['frames']} frames in {r['seconds']:.1f} s ({r['frames'] / r['seconds']:.2f} frames/s); "
          f"tracking pass: peak RSS first tenth {tenths[0]:.0f} MiB, last tenth {tenths[-1]:.0f} MiB, "
          f"ratio {tenths[-1] / tenths[0]:.3f} (each tenth {' '.join(f'{m:.0f}' for m in tenths)}); "
          f"render pass peak {render:.0f} MiB; overall peak {r['peak_rss_mb']:.0f} MiB")
    return 0


def _scaling(args: argparse.Namespace) -> int:
    """Ray job throughput with 1 actor on a 1-CPU node vs 2 actors on two 1-CPU nodes
    (ray.cluster_utils.Cluster on this machine; each actor runs inference on 1 thread)."""
    import ray
    from ray.cluster_utils import Cluster

    from jobs.config import load_config
    from jobs.run import JobSpec, run_job

    cfg = load_config(None, [f"detector.model={args.model}", *args.overrides])
    lines = []
    with tempfile.TemporaryDirectory(prefix="vidtrack-bench-") as tmp_s:
        tmp = Path(tmp_s)
        base = _as_video(args.sequence, tmp)
        archive = tmp / "archive"
        archive.mkdir()
        for i in range(args.videos):  # distinct keys, same content: equal work per video
            (archive / f"cam{i:02d}.mp4").write_bytes(base.read_bytes())
        fps = {}
        for actors in (1, 2):
            c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
            for _ in range(actors):
                c.add_node(num_cpus=1)
            c.wait_for_nodes()
            ray.init(address=c.address, logging_level=logging.WARNING)
            try:
                spec = JobSpec(input=str(archive), output=str(tmp / f"out{actors}"), config=cfg, actors=actors,
                               progress=False)
                t0 = time.perf_counter()
                r = run_job(spec)
                seconds = time.perf_counter() - t0
            finally:
                ray.shutdown()
                c.shutdown()
            ok = [a for a in r.attempts if a.status == "ok"]
            span = (max(datetime.fromisoformat(a.finished_at) for a in ok)
                    - min(datetime.fromisoformat(a.started_at) for a in ok)).total_seconds()
            fps[actors] = r.frames / span  # processing span: actor start-up (model load) excluded
            lines.append(f"scaling: {actors} actor(s) on {actors} node(s): {r.ok} videos, {r.frames} frames; "
                         f"job wall {seconds:.1f} s ({r.frames / seconds:.2f} frames/s), processing span "
                         f"{span:.1f} s ({fps[actors]:.2f} frames/s)")
            print(lines[-1], flush=True)
    print(f"scaling: 2 actors / 1 actor = {fps[2] / fps[1]:.2f}x (cores on this machine: {os.cpu_count()})")
    return 0


def _cpu_line() -> str:
    from tracking.inference import cpu_description

    d = cpu_description()
    found = ", ".join(f"{k} {'yes' if d[k] else 'no'}" for k in ("avx512", "vnni", "bf16", "amx"))
    return (f"cpu: {d['model']}, {d['cores']} cores for inference; {found}. vidtrack runs fp32 on every CPU "
            "(OpenVINO held to f32: bf16 unused even where present)")


def _resolve_paths(args: argparse.Namespace) -> None:
    """Absolute paths before anything reaches a child process (which may run in another folder).
    A --model that is not an existing file stays as given: an ultralytics model name."""
    model = Path(args.model).expanduser()
    if model.exists() or os.sep in args.model or args.model.startswith("."):
        args.model = str(model.resolve())
    args.sequence = Path(args.sequence).expanduser().resolve()
    args.clip = Path(args.clip).expanduser().resolve()
    if args.json:
        args.json = Path(args.json).expanduser().resolve()


def _throughput(args: argparse.Namespace) -> int:
    from jobs.config import load_config

    cfg = load_config(None, [f"detector.model={args.model}", *args.overrides])
    imgsz = cfg.detector.imgsz
    only = set(args.only or ("naive", "naive-detect", "detect", "vidtrack", "plain"))
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="vidtrack-bench-") as tmp_s:
        tmp = Path(tmp_s)
        video = _as_video(args.sequence, tmp)
        plain = [*args.overrides, "embedder.backend='torch'", "detector.backend='torch'", "detector.batch_size=1"]
        runs = [("naive", lambda: _run_naive(video, args.model, tmp / "naive", imgsz)),
                ("naive-detect", lambda: _run_child("naive-detect", video, args.model, tmp / "nd", args.overrides)),
                ("detect", lambda: _run_child("detect", video, args.model, tmp / "detect", args.overrides)),
                ("vidtrack", lambda: _run_child("vidtrack", video, args.model, tmp / "vt", args.overrides)),
                ("plain", lambda: _run_child("vidtrack", video, args.model, tmp / "plain", plain))]
        for round_ in range(args.repeat):
            for name, fn in runs:
                if name not in only:
                    continue
                r = fn()
                r["fps"] = r["frames"] / r["seconds"]
                if args.sequence.is_dir() and round_ == 0:
                    r["idf1"] = _idf1(args.sequence, tracks=r.get("tracks"), mot_txt=r.get("mot"))
                print(_result_line(name, r), flush=True)
                results[name] = _fastest(results.get(name), r)
    if args.repeat > 1:
        print(f"fastest of {args.repeat} runs each:")
        for name, r in results.items():
            print(_result_line(name, r) + f"  (slowest run {r['slowest_s']:.2f} s)")
    if "vidtrack" in results:
        print(_costs_line(results["vidtrack"]))
        print("ratios: " + "; ".join(_ratios(results, imgsz, args.sequence.name)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


def _fastest(best: dict[str, Any] | None, r: dict[str, Any]) -> dict[str, Any]:
    """Keep the faster run (and its IDF1, which every run of a contender shares), noting the slowest."""
    if best is None:
        return {**r, "slowest_s": r["seconds"]}
    keep = r if r["seconds"] < best["seconds"] else best
    return {**keep, "idf1": best.get("idf1"), "slowest_s": max(best["slowest_s"], r["seconds"])}


def _result_line(name: str, r: dict[str, Any]) -> str:
    idf1 = f"  IDF1 {r['idf1']:.2f}" if r.get("idf1") is not None else ""
    stages = f"  stages {r['stages']}" if "stages" in r else ""
    return (f"{name:<12} {r['frames']:5d} frames  {r['seconds']:7.2f} s  {r['fps']:6.2f} frames/s  "
            f"peak RSS {r['peak_rss_mb']:6.0f} MiB{idf1}{stages}")


def _costs_line(vt: dict[str, Any]) -> str:
    """Embedding cost per crop against detector cost per frame (target: at most a tenth)."""
    stages, frames, crops = vt["stages"], vt["frames"], vt["crops"]
    det_ms = 1000 * stages.get("detect", 0.0) / frames
    crop_ms = 1000 * stages.get("embed", 0.0) / crops if crops else float("nan")
    return (f"costs: detect {det_ms:.1f} ms/frame; embed {crop_ms:.2f} ms/crop ({crops} crops, "
            f"{crops / frames:.1f}/frame) = detect/{det_ms / crop_ms:.1f}; model load {vt['load_seconds']:.2f} s")


def _ratios(results: dict[str, dict[str, Any]], imgsz: int, name: str) -> list[str]:
    vt = results["vidtrack"]["fps"]
    parts = [f"imgsz {imgsz}, {name}"]
    for key, label in (("naive", "naive"), ("naive-detect", "naive decode+detect"), ("detect", "own decode+detect")):
        if key in results:
            parts.append(f"vidtrack/{label} {vt / results[key]['fps']:.2f}x")
    if "plain" in results and results["plain"].get("idf1") is not None:
        parts.append(f"IDF1 vidtrack - plain {results['vidtrack']['idf1'] - results['plain']['idf1']:+.2f}")
    return parts


def _timed(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return seconds


def _track_cmd(video: Path, out: Path, model: str, overrides: list[str], *extra: str) -> list[str]:
    sets = [x for o in [f"detector.model={model}", *overrides] for x in ("--set", o)]
    return [sys.executable, "-m", "jobs.cli", "track", str(video), "--out", str(out), *sets, *extra]


def _process(args: argparse.Namespace) -> int:
    """Whole processes as users start them (imports, model loading and start-up included):
    `vidtrack track` against the naive script, and vidtrack's time to first frame."""
    seed = SHARED / "bench" / "seed_pipeline.py"
    with tempfile.TemporaryDirectory(prefix="vidtrack-bench-") as tmp_s:
        tmp = Path(tmp_s)
        videos = [_as_video(args.sequence, tmp), args.clip]
        first = [_timed(_track_cmd(videos[0], tmp / f"ff{i}", args.model, args.overrides, "--max-frames", "1"), tmp)
                 for i in range(2)]
        print(f"start-up: `vidtrack track --max-frames 1`, whole process: {first[0]:.2f} s with the export cache "
              f"as found, {first[1]:.2f} s warm (time to first frame, upper bound)", flush=True)
        for video in videos:
            frames = _frame_count(video)
            naive = min(_timed([sys.executable, str(seed), args.model, str(video), str(tmp / "naive.mp4")], tmp)
                        for _ in range(args.repeat))
            ours = min(_timed(_track_cmd(video, tmp / "vt", args.model, args.overrides), tmp)
                       for _ in range(args.repeat))
            print(f"process: {video.name} ({frames} frames): naive {naive:.1f} s, vidtrack track {ours:.1f} s "
                  f"= {naive / ours:.2f}x (fastest of {args.repeat})", flush=True)
    return 0


EMBED_OPTIONS: list[tuple[tuple[int, int], str]] = [
    ((224, 224), "fp32"), ((192, 192), "fp32"), ((160, 160), "fp32"), ((128, 128), "fp32"), ((256, 128), "fp32"),
    ((128, 64), "fp32"), ((224, 224), "int8"), ((160, 160), "int8")]


def _costs(args: argparse.Namespace, rounds: int = 5) -> int:
    """Each option timed on the same real frames and crops (the fp32 detector's boxes on them),
    round-robin so that a busy machine slows every option alike; each option's fastest round is
    kept (load only ever adds time: on this VM one call varies by 10-30%)."""
    from bench.reid import Option, embedder_for
    from jobs.config import load_config
    from tracking.detector import Detector
    from tracking.mot import MotSequence
    from tracking.video import VideoReader

    cfg = load_config(None, [f"detector.model={args.model}", *args.overrides])
    with VideoReader(MotSequence.open(args.sequence).source) as r:
        frames = [f.bgr for _, f in zip(range(cfg.detector.batch_size), r, strict=False)]
    dets = {p: Detector(dataclasses.replace(cfg.detector, precision=p)) for p in ("fp32", "int8")}
    boxes = dets["fp32"](frames)
    options: list[Option] = [*EMBED_OPTIONS, *REID_OPTIONS]
    embedders = dict(embedder_for(o) for o in options)
    crops = {o: [c for f, d in zip(frames, boxes, strict=True) for c in e.crops(f, d)] for o, e in embedders.items()}
    seconds: dict[Any, float] = {k: float("inf") for k in [*dets, *embedders]}
    for _ in range(rounds):
        for p, det in dets.items():
            t0 = time.perf_counter()
            det(frames)
            seconds[p] = min(seconds[p], (time.perf_counter() - t0) / len(frames))
        for o, emb in embedders.items():
            t0 = time.perf_counter()
            emb.embed_crops(crops[o])
            seconds[o] = min(seconds[o], (time.perf_counter() - t0) / len(crops[o]))
    for p in dets:
        print(f"costs: detector {p} {1000 * seconds[p]:.1f} ms/frame (batch {len(frames)}, imgsz {cfg.detector.imgsz})")
    for name in embedders:
        ms = 1000 * seconds[name]
        print(f"costs: embedder {name} {ms:.2f} ms/crop = detector fp32/{1000 * seconds['fp32'] / ms:.1f}")
    return 0


def _frame_count(video: Path) -> int:
    from tracking.video import VideoReader

    with VideoReader(video) as r:
        return sum(1 for _ in r)


def main(args: argparse.Namespace) -> int:
    _resolve_paths(args)
    if getattr(args, "gpu", False):
        from bench.gpu import gpu_bench

        return gpu_bench(args)
    print(_cpu_line(), flush=True)
    if args.plan:
        from bench.plan_bench import main as plan_bench

        return plan_bench([])
    if args.retrack:
        from bench.retrack_bench import main as retrack_bench

        return retrack_bench(["--model", args.model])
    if args.count:
        from bench.count_bench import main as count_bench

        return count_bench([])
    if args.memory:
        return _memory(args)
    if args.scaling:
        return _scaling(args)
    if args.process:
        return _process(args)
    if args.costs:
        return _costs(args)
    if args.naive_scores:
        from bench.naive_scores import naive_scores, shared_sequences

        return naive_scores(shared_sequences(SHARED), args.model, SHARED / "bench" / "seed_pipeline.py",
                            args.json or REPO / "out" / "naive-scores.json")
    if args.reid:
        from bench.reid import reid

        return reid(sorted(p for p in (SHARED / "data" / "mot").glob("*/*") if (p / "gt").is_dir())
                    + sorted(p for p in (SHARED / "data" / "mot").glob("*") if (p / "gt").is_dir()),
                    [*EMBED_OPTIONS, *REID_OPTIONS])
    return _throughput(args)


def cli(argv: list[str] | None = None) -> int:
    """`vidtrack-bench` / `python -m bench`."""
    parser = argparse.ArgumentParser(prog="vidtrack-bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bench_args(parser)
    from bench.gpu import add_gpu_args

    add_gpu_args(parser)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return main(parser.parse_args(argv))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.exit(_child(sys.argv[2:]))
    sys.exit(cli())
