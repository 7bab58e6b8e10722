"""`vidtrack-bench --gpu` (`make bench-gpu`): the per-video library on NVIDIA GPUs, without Ray.

Several worker processes per GPU stand in for fractional Ray actors (`--gpus-per-actor` 1, 0.5,
0.25: 1, 2 and 4 workers on every GPU, each loading its own models, as an actor would). For each
setting, every worker loops `tracking.pipeline.process_video` over each input for --gpu-seconds
(one pass is up to --gpu-frames frames of the clip; records only unless --set
output.annotated_video=true), all workers at once, and the bench reports:

- frames/s per GPU: frames done by every worker / wall time from start to the last one done / GPUs;
- the time split, ms per frame summed over workers: decode (its own thread, overlapping the rest),
  detect (ultralytics' own timers split it: preprocess = letterbox + host-to-device copy,
  inference, postprocess = NMS), h2d (the copy alone, measured apart: one uint8 batch of
  batch x 3 x imgsz x imgsz copied from pageable memory, synchronised, times the detector calls:
  an upper bound), embed, track, and the rest (refine, Parquet);
- GPU utilisation (mean) and memory (peak used on the device; peak allocated by torch per worker),
  sampled every 0.5 s with pynvml when installed, else `nvidia-smi --query-gpu` (the JSON says which).

Inputs: the shared clips (../shared/data/videos) at their own size and upscaled to 1920x1080
(written once, H.264). Within 8 minutes it writes one JSON file (--json, default
out/gpu-bench.json) and prints one table. Without CUDA it prints one line and exits 0;
--gpu-device cpu runs the same plumbing on the CPU (tests/test_bench_gpu.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import IO, Any

from bench.run import REPO, SHARED

BUDGET_S = 480.0  # the whole measurement, inputs included
UPSCALED = (1920, 1080)


def add_gpu_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gpu", action="store_true", help="the per-video library on NVIDIA GPUs (bench/gpu.py)")
    p.add_argument("--gpus-per-actor", default="1,0.5,0.25",
                   help="for --gpu: fractions of a GPU per worker, i.e. 1/f workers per GPU")
    p.add_argument("--gpu-seconds", type=float, default=20.0, help="for --gpu: seconds per input and setting")
    p.add_argument("--gpu-frames", type=int, default=300, help="for --gpu: frames per pass over a clip")
    p.add_argument("--gpu-device", default="cuda", choices=("cuda", "cpu"),
                   help="for --gpu: cpu runs the plumbing without a GPU (one worker set on the CPU)")


def no_cuda_line() -> str | None:
    """One line saying why nothing can be measured here, or None when CUDA is usable."""
    from tracking.inference import cpu_description, cuda_present

    if cuda_present():
        return None
    cpu = cpu_description()
    return (f"gpu bench: no CUDA device on this machine ({cpu['model']}, {cpu['cores']} cores; torch sees no GPU "
            "or no NVIDIA driver): nothing measured")


def gpu_bench(args: argparse.Namespace) -> int:
    on_cpu = args.gpu_device == "cpu"
    if not on_cpu and (line := no_cuda_line()) is not None:
        print(line, flush=True)
        return 0
    t0 = time.perf_counter()
    devices = ["cpu"] if on_cpu else _cuda_devices()
    fractions = [float(f) for f in args.gpus_per_actor.split(",")]
    json_path = args.json or REPO / "out" / "gpu-bench.json"
    with tempfile.TemporaryDirectory(prefix="vidtrack-gpu-bench-") as tmp_s:
        inputs = _inputs(Path(tmp_s), args.gpu_frames)
        phases = []
        for f in fractions:
            per_device = max(1, round(1 / f))
            left = BUDGET_S - (time.perf_counter() - t0)
            if left < 30 + len(inputs) * args.gpu_seconds:
                phases.append({"gpus_per_actor": f, "skipped": f"{left:.0f} s left of the {BUDGET_S:.0f} s budget"})
                continue
            phases.append(_phase(args, devices, per_device, f, inputs))
    report = {"devices": [_device_name(d) for d in devices], "gpu_query": _Sampler.kind() if not on_cpu else "none",
              "model": args.model, "overrides": args.overrides, "seconds_per_input": args.gpu_seconds,
              "frames_per_pass": args.gpu_frames, "inputs": [i["name"] for i in inputs], "phases": phases,
              "wall_seconds": round(time.perf_counter() - t0, 1)}
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2))
    print(table(report), flush=True)
    print(f"gpu bench: {report['wall_seconds']:.0f} s; JSON in {json_path}", flush=True)
    return 0


def _cuda_devices() -> list[str]:
    import torch

    return [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def _device_name(device: str) -> str:
    from tracking.detector import device_name

    return device_name(device)


# -- inputs -------------------------------------------------------------------------------

def _inputs(tmp: Path, frames: int) -> list[dict[str, Any]]:
    """Each shared clip as it is (its first `frames` frames are one pass) and upscaled to 1080p
    (those frames resized, encoded once)."""
    import cv2

    from tracking.video import VideoReader, VideoSink

    out = []
    for clip in sorted((SHARED / "data" / "videos").glob("*.mp4")):
        with VideoReader(clip) as r:
            info = r.info
            big = tmp / f"{clip.stem}-1080p.mp4"
            with VideoSink(big, *UPSCALED, info.fps, crf=23, preset="ultrafast") as sink:
                for f, _ in zip(r, range(frames), strict=False):
                    sink.write(cv2.resize(f.bgr, UPSCALED, interpolation=cv2.INTER_LINEAR))
        out.append({"name": f"{clip.stem} {info.width}x{info.height}", "path": str(clip)})
        out.append({"name": f"{clip.stem} {UPSCALED[0]}x{UPSCALED[1]}", "path": str(big)})
    return out


# -- one setting: its workers, all at once ------------------------------------------------

def _phase(args: argparse.Namespace, devices: list[str], per_device: int, fraction: float,
           inputs: list[dict[str, Any]]) -> dict[str, Any]:
    specs = [{"device": d, "model": args.model, "overrides": args.overrides, "seconds": args.gpu_seconds,
              "frames": args.gpu_frames} for d in devices for _ in range(per_device)]
    workers = [_Worker(s) for s in specs]
    try:
        ready = [w.expect("READY") for w in workers]
        rows = []
        for inp in inputs:
            sampler = _Sampler(devices if devices != ["cpu"] else [])
            t0 = time.perf_counter()
            for w in workers:
                w.send(f"GO {inp['path']}")
            results = [w.expect("RESULT") for w in workers]
            rows.append(_row(inp["name"], results, time.perf_counter() - t0, len(devices), sampler.stop()))
    finally:
        for w in workers:
            w.close()
    return {"gpus_per_actor": fraction, "workers_per_gpu": per_device, "workers": len(workers),
            "load_seconds": max(r["load_seconds"] for r in ready), "rows": rows}


def _row(name: str, results: list[dict[str, Any]], wall: float, n_devices: int,
         gpu: dict[str, Any]) -> dict[str, Any]:
    frames = sum(r["frames"] for r in results)
    stages: dict[str, float] = defaultdict(float)
    for r in results:
        for k, v in r["stages"].items():
            stages[k] += v
    ms = {k: round(1000 * v / frames, 3) if frames else 0.0 for k, v in sorted(stages.items())}
    return {"input": name, "frames": frames, "wall_seconds": round(wall, 3),
            "frames_per_second_per_gpu": round(frames / wall / n_devices, 2),
            "ms_per_frame": ms, "gpu": gpu,
            "torch_peak_allocated_mib": max(r["torch_peak_mib"] for r in results)}


class _Worker:
    """One worker process (`python -m bench.gpu --worker SPEC`), spoken to by lines."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.log: IO[str] = tempfile.TemporaryFile("w+")  # noqa: SIM115 - open as long as the worker runs
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.gpu", "--worker", json.dumps(spec)], cwd=REPO,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, tag: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(tag + " "):
                result: dict[str, Any] = json.loads(line[len(tag) + 1:])
                return result
        self.proc.wait(timeout=30)
        self.log.seek(0)
        raise RuntimeError(f"gpu bench worker exited ({self.proc.returncode}) before {tag}:\n{self.log.read()[-4000:]}")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("END")
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# -- GPU utilisation and memory ------------------------------------------------------------

class _Sampler:
    """Utilisation and memory of `devices` every 0.5 s on a thread, until `stop()`."""

    def __init__(self, devices: list[str], interval: float = 0.5) -> None:
        self.index = [int(d.split(":")[1]) for d in devices]
        self.samples: dict[int, list[tuple[float, float]]] = {i: [] for i in self.index}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        if self.index and self.kind() != "none":
            self._thread.start()

    @staticmethod
    def kind() -> str:
        try:
            import pynvml  # noqa: F401

            return "pynvml"
        except ImportError:
            return "nvidia-smi" if shutil.which("nvidia-smi") else "none"

    def _run(self, interval: float) -> None:
        query = _nvml_query() if self.kind() == "pynvml" else _smi_query
        while not self._stop.wait(interval):
            for i, util, mem in query():
                if i in self.samples:
                    self.samples[i].append((util, mem))

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        out = {}
        for i, s in self.samples.items():
            out[f"cuda:{i}"] = ({"util_mean_pct": round(sum(u for u, _ in s) / len(s), 1),
                                 "mem_peak_mib": max(m for _, m in s), "samples": len(s)} if s else {"samples": 0})
        return out


def _smi_query() -> list[tuple[int, float, float]]:
    out = subprocess.run(["nvidia-smi", "--query-gpu=index,utilization.gpu,memory.used",
                          "--format=csv,noheader,nounits"], capture_output=True, text=True, check=True).stdout
    rows = [line.split(",") for line in out.strip().splitlines()]
    return [(int(i), float(u), float(m)) for i, u, m in rows]


def _nvml_query() -> Any:
    import pynvml

    pynvml.nvmlInit()
    handles = [(i, pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(pynvml.nvmlDeviceGetCount())]

    def query() -> list[tuple[int, float, float]]:
        return [(i, float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu),
                 pynvml.nvmlDeviceGetMemoryInfo(h).used / 2**20) for i, h in handles]
    return query


# -- the table ------------------------------------------------------------------------------

COLUMNS = ("decode", "preprocess", "h2d", "inference", "postprocess", "embed", "track", "other")


def table(report: dict[str, Any]) -> str:
    head = (f"gpu bench: {', '.join(report['devices'])}; frames/s per GPU and ms per frame (summed over workers); "
            f"GPU query: {report['gpu_query']}")
    lines = [head, f"{'GPU/actor':>9} {'input':<40} {'frames/s/GPU':>12} " + " ".join(f"{c:>11}" for c in COLUMNS)
             + f" {'GPU util %':>10} {'GPU MiB':>8}"]
    for ph in report["phases"]:
        if "skipped" in ph:
            lines.append(f"{ph['gpus_per_actor']:>9g} skipped: {ph['skipped']}")
            continue
        for r in ph["rows"]:
            ms, gpus = r["ms_per_frame"], list(r["gpu"].values())
            util = [g["util_mean_pct"] for g in gpus if g.get("samples")]
            mem = [g["mem_peak_mib"] for g in gpus if g.get("samples")]
            cells = " ".join(f"{ms.get(c, 0.0):>11.2f}" for c in COLUMNS)
            lines.append(f"{ph['gpus_per_actor']:>9g} {r['input']:<40} {r['frames_per_second_per_gpu']:>12.1f} "
                         f"{cells} {(sum(util) / len(util)) if util else float('nan'):>10.1f} "
                         f"{max(mem) if mem else float('nan'):>8.0f}")
    return "\n".join(lines)


# -- the worker process ---------------------------------------------------------------------

def worker(spec: dict[str, Any]) -> int:
    from jobs.config import load_config
    from tracking.pipeline import Models

    t0 = time.perf_counter()
    cfg = load_config(None, [f"detector.model={spec['model']}", f"detector.device={spec['device']}",
                             "output.annotated_video=false", *spec["overrides"]])
    models = Models.load(cfg)
    split = _instrument(models.detector)
    h2d_ms = _h2d_ms(spec["device"], cfg.detector.batch_size, cfg.detector.imgsz)
    _say("READY", {"load_seconds": round(time.perf_counter() - t0, 2), "h2d_ms_per_batch": h2d_ms})
    for line in sys.stdin:
        if not line.startswith("GO "):
            break
        _say("RESULT", _loop(Path(line[3:].strip()), cfg, models, spec, split, h2d_ms))
    return 0


def _say(tag: str, data: dict[str, Any]) -> None:
    sys.stdout.write(f"{tag} {json.dumps(data)}\n")
    sys.stdout.flush()


def _loop(video: Path, cfg: Any, models: Any, spec: dict[str, Any], split: dict[str, float],
          h2d_ms: float) -> dict[str, Any]:
    """process_video over `video` again and again for spec['seconds'] (at least one pass)."""
    from tracking.pipeline import VideoOutputs, process_video

    split.clear()
    stages: dict[str, float] = defaultdict(float)
    frames, t0 = 0, time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vidtrack-gpu-worker-") as out:
        while frames == 0 or time.perf_counter() - t0 < spec["seconds"]:
            s = process_video(video, VideoOutputs.in_dir(out, "v", annotated=cfg.output.annotated_video), cfg,
                              models, max_frames=spec["frames"])
            frames += s.frames
            for k, v in s.stage_seconds.items():
                stages[k] += v
    wall = time.perf_counter() - t0
    detect = stages.pop("detect", 0.0)
    for k in ("preprocess", "inference", "postprocess"):
        stages[k] = split.get(k, 0.0)
    stages["h2d"] = h2d_ms / 1000 * split.get("calls", 0.0)
    if not split:
        stages["inference"] = detect  # a CPU backend: no split of its own
    known = ("decode", "embed", "track", "preprocess", "inference", "postprocess")
    stages["other"] = max(0.0, wall - sum(stages.get(k, 0.0) for k in known if k != "decode"))
    return {"frames": frames, "seconds": wall, "stages": {k: stages.get(k, 0.0) for k in COLUMNS},
            "torch_peak_mib": _torch_peak_mib(spec["device"])}


def _instrument(detector: Any) -> dict[str, float]:
    """ultralytics' own per-image timers (ms) summed into seconds per stage; `calls` counts batches."""
    split: dict[str, float] = defaultdict(float)
    yolo = getattr(detector, "_yolo", None)
    if yolo is None:
        return split
    predict = yolo.predict

    def timed(*a: Any, **k: Any) -> Any:
        results = predict(*a, **k)
        split["calls"] += 1
        for r in results:
            for key, ms in (getattr(r, "speed", None) or {}).items():
                split[key] += (ms or 0.0) / 1000
        return results
    yolo.predict = timed
    return split


def _h2d_ms(device: str, batch: int, imgsz: int, reps: int = 10) -> float:
    """ms to copy one uint8 detector batch (batch x 3 x imgsz x imgsz) from pageable host memory."""
    if not device.startswith("cuda"):
        return 0.0
    import torch

    x = torch.zeros((batch, 3, imgsz, imgsz), dtype=torch.uint8)
    x.to(device)
    torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        x.to(device)
    torch.cuda.synchronize(device)
    return round(1000 * (time.perf_counter() - t0) / reps, 3)


def _torch_peak_mib(device: str) -> float:
    if not device.startswith("cuda"):
        return 0.0
    import torch

    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        os.environ.setdefault("VIDTRACK_MODELS", str(SHARED / "models" / "reid"))
        sys.exit(worker(json.loads(sys.argv[2])))
    sys.exit(f"usage: {sys.argv[0]} --worker SPEC (run by vidtrack-bench --gpu)")
