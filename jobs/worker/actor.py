"""The Ray actor: loads the detector and embedder once, then processes videos one at a time,
each with a fresh tracker (inside `process_video`), in a per-attempt temp dir.

Every attempt comes back as an `Attempt` row: the steps of one attempt are
jobs/worker/attempt.py's, what a failure means is jobs/worker/outcome.py's, publishing all or
nothing is jobs/worker/publish.py's. Only the actor dying (killed process, lost node)
surfaces as a Ray error.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.dataset.layout import DatasetLayout
from jobs.dataset.manifest import Attempt, Status, now_iso
from jobs.dataset.markers import write_failed_marker
from jobs.detections import DetectionsStage
from jobs.modelref import fetch_model, fetch_reid_model
from jobs.plan import VideoTask
from jobs.procs import ProcessRef
from jobs.storage import Storage, open_storage
from jobs.worker.attempt import VideoAttempt
from jobs.worker.outcome import StageError, classify
from jobs.worker.publish import DriverGone, remove_outputs
from jobs.worker.scratch import claim_workdir
from tracking.config import ConfigError, PipelineConfig
from tracking.modelref import ModelError, file_sha256

if TYPE_CHECKING:
    from tracking.pipeline import Models

log = logging.getLogger("vidtrack." + __name__)


@dataclass(frozen=True)
class ActorInfo:
    """What `ready()` reports: where the actor runs, and why it could not start, if it could not."""

    node_id: str
    pid: int
    workdir: str
    error: str = ""  # "ErrorClass: message" when the models could not be loaded
    usage_error: bool = False  # the error is the user's input (bad model, class name, device)
    model_loads: int = 0  # 0 for an actor that only re-tracks (it never builds a model)


def _ray_node_id() -> str:
    import ray

    return str(ray.get_runtime_context().get_node_id())


class VideoWorker:
    """A plain class that the driver makes a Ray actor (`ray.remote(VideoWorker)`, with its
    CPU/GPU shares set in jobs/run/session.py:start_pool); the driver calls `ready`,
    `process` and `frames_done` on it. A failure to load the models does not raise out of
    the constructor (Ray would hide it behind "actor died in its creation task"): `ready()`
    reports it."""

    def __init__(self, cfg: PipelineConfig, source_uri: str, output_uri: str, params_id: str,
                 model_sha256: str, endpoint_url: str | None = None, threads: int | None = None,
                 run_id: str = "", detections_id: str = "", load_models: bool = True,
                 driver: ProcessRef | None = None, node_id: str | None = None) -> None:
        from jobs.logsafe import install

        install()  # this process's logs reach the driver and Ray's session folder: redacted, names escaped
        self.node_id = _ray_node_id() if node_id is None else node_id  # "": in the driver, no Ray (jobs/run/local.py)
        self.run_id, self.owner = run_id, f"run {run_id}, node {self.node_id[:12]}, pid {os.getpid()}"
        self.workdir = claim_workdir(self.node_id)
        self.driver = driver  # the run's driver: nothing is published once it is gone (check_driver)
        self.source: Storage = open_storage(source_uri, endpoint_url)
        self.layout = DatasetLayout(open_storage(output_uri, endpoint_url), params_id)
        # the detections stage: reused when it matches, written otherwise ("" turns it off)
        self.stage = DetectionsStage(self.layout.storage, detections_id) if detections_id else None
        self._models: Models | None = None
        self.model_loads = 0  # how many times this actor built the detector and embedder
        self._frames_done = 0
        self.start_error, self.usage_error = "", False
        try:
            self._configure(cfg, model_sha256, endpoint_url, threads)
            if load_models:  # an actor that only re-tracks never builds a model
                self.models()
        except Exception as e:  # reported by ready(), with its real cause
            self.start_error = f"{e.__class__.__name__}: {e}"
            self.usage_error = isinstance(e, ModelError | ConfigError | ValueError)
            log.error("actor could not start: %s", self.start_error)

    def _configure(self, cfg: PipelineConfig, model_sha256: str, endpoint_url: str | None,
                   threads: int | None) -> None:
        self.cfg, self._model_args = cfg, (model_sha256, endpoint_url)
        if threads:  # inference follows the actor's CPU share (torch is not imported for it: seconds)
            from tracking.inference import set_inference_threads

            set_inference_threads(threads)

    def models(self) -> Models:
        """The detector and embedder, built on first use (once per actor)."""
        if self._models is None:
            from tracking.pipeline import Models

            model_sha256, endpoint_url = self._model_args
            cfg = self.cfg
            local_model = fetch_model(cfg.detector.model, endpoint_url,
                                      Path(tempfile.gettempdir()) / "vidtrack-models")
            if model_sha256 and Path(local_model).is_file() and file_sha256(local_model) != model_sha256:
                raise ModelError(f"detector model {cfg.detector.model!r} changed during the run: "
                                 f"expected SHA-256 {model_sha256}")
            local_reid = fetch_reid_model(cfg.embedder.reid_model, endpoint_url,
                                          Path(tempfile.gettempdir()) / "vidtrack-models")
            self.cfg = dataclasses.replace(cfg, detector=dataclasses.replace(cfg.detector, model=local_model),
                                           embedder=dataclasses.replace(cfg.embedder, reid_model=local_reid))
            self._models = Models.load(self.cfg)
            self.model_loads += 1
        return self._models

    def ready(self) -> ActorInfo:
        return ActorInfo(self.node_id, os.getpid(), str(self.workdir), self.start_error, self.usage_error,
                         self.model_loads)

    def frames_done(self) -> int:
        """Frames of the video in flight processed so far (the actor is threaded: this answers
        while `process` runs), so the driver's progress moves inside an hour-long video."""
        return self._frames_done

    def count_frames(self, n: int) -> None:
        self._frames_done = n

    def check_driver(self) -> None:
        """Raise DriverGone when the run's driver no longer runs: what is published now no manifest
        would record. On the driver's host its process is asked; elsewhere, Ray's job table."""
        if self.driver is None or (self.driver.on_this_host() and self.driver.alive()):
            return
        if not self.driver.on_this_host():
            import ray
            from ray._private import state

            job = ray.get_runtime_context().get_job_id()
            if any(j["JobID"] == job and not j["IsDead"] for j in state.jobs()):
                return
        raise DriverGone(f"the driver of run {self.run_id} (pid {self.driver.pid} on {self.driver.host}) is gone")

    def process(self, task: VideoTask, attempt: int) -> Attempt:
        self._frames_done = 0
        started, t0 = now_iso(), time.perf_counter()
        row = Attempt(task.video_id, task.name, attempt, Status.RETRYABLE, node_id=self.node_id,
                      worker_pid=os.getpid(), started_at=started, bytes_in=task.size,
                      source_modified=task.identity.modified, source_etag=task.identity.etag, run_id=self.run_id)
        try:
            with tempfile.TemporaryDirectory(prefix=f"a{attempt}-", dir=self.workdir) as tmp:
                VideoAttempt(self, task, Path(tmp), row).run()
        except StageError as e:
            if classify(row, e, self.run_id):  # the video's own fault: no outputs, a marker that sticks
                remove_outputs(self.layout, task)
                write_failed_marker(self.layout, row, task.identity)
        row.seconds = round(time.perf_counter() - t0, 3)
        row.finished_at = now_iso()
        return row
