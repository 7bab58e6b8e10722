"""Where a run's videos are processed, and the Ray side of it: the session (a cluster address,
or an embedded local Ray), the check that some node can hold the requested actor, and
starting the pool of actors with the resources they ask for (CPU and GPU shares, two threads
each). A run that only re-tracks a few cached videos on this machine needs no Ray at all: it
re-tracks them in the driver's process (`where_to_run`, jobs/run/local.py)."""

from __future__ import annotations

import enum
import logging
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from jobs.detections import DetectionsStage
from jobs.exits import EXIT_INCOMPLETE, StartError, UsageError
from jobs.plan import VideoTask
from jobs.procs import ProcessRef
from jobs.reaper import Reaper
from jobs.run.job import JobSpec, RunIds
from jobs.run.local import InProcessPool, in_driver
from jobs.run.pool import Started, first_line
from jobs.storage import Storage

log = logging.getLogger("vidtrack." + __name__)


class Where(enum.Enum):
    ACTORS = "actors"  # detect and track on actors that load the models
    RETRACK_ACTORS = "retrack-actors"  # every video cached: CPU-only actors that never build a model
    RETRACK_DRIVER = "retrack-driver"  # every video cached, few frames, no --address: no Ray at all


def where_to_run(spec: JobSpec, dest: Storage, ids: RunIds, todo: list[VideoTask]) -> Where:
    frames = DetectionsStage(dest, ids.detections_id).all_cached(todo) if ids.detections_id else None
    if frames is None:
        return Where.ACTORS
    if spec.address or not in_driver(frames, spec.config.output.annotated_video):
        return Where.RETRACK_ACTORS
    log.info("re-tracking %d cached frames in the driver's process (no Ray session)", frames)
    return Where.RETRACK_DRIVER


@contextmanager
def ray_session(spec: JobSpec, where: Where = Where.ACTORS) -> Iterator[None]:
    if where is Where.RETRACK_DRIVER:  # not even imported (a second or so)
        yield
        return
    import ray

    started_here = not ray.is_initialized()
    if not (sys.stdout.isatty() and sys.stderr.isatty()):  # a log file gets no colour codes around
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # the actors' forwarded lines
    if started_here:
        env = {"env_vars": {"YOLO_VERBOSE": "True" if spec.verbose else "False", "YOLO_AUTOINSTALL": "false"}}
        if spec.address:
            _connect(spec.address, env, spec.verbose)
        else:
            ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING, runtime_env=env)
    reaper = Reaper.start() if started_here and not spec.address else None  # our Ray dies with us (jobs/reaper.py)
    try:
        yield
    finally:
        if started_here:
            ray.shutdown()
        if reaper is not None:
            reaper.release()


CONNECT_TIMEOUT_S = 3.0  # to reach a cluster's GCS port (Ray itself retries for minutes)
RAY_CONNECT_TIMEOUT_S = 15.0  # for ray.init to join a cluster that answers


def _connect(address: str, env: dict[str, Any], verbose: bool = False) -> None:
    """ray.init on a cluster, or StartError in one line naming the address: nothing listening
    (checked first, in CONNECT_TIMEOUT_S) or a cluster that refuses the connection (token
    authentication without the token, another Ray version)."""
    import ray

    _check_listening(address)
    with _held_stderr(replay=verbose) as real_stderr:
        watchdog = threading.Timer(RAY_CONNECT_TIMEOUT_S, _give_up, (address, real_stderr))
        watchdog.daemon = True
        watchdog.start()
        try:
            ray.init(address=address, runtime_env=env, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, TimeoutError, ValueError, ray.exceptions.RayError) as e:
            raise StartError(f"could not connect to the Ray cluster at --address {address}: "
                             f"{e.__class__.__name__}: {first_line(e)}") from None
        finally:
            watchdog.cancel()


@contextmanager
def _held_stderr(replay: bool) -> Iterator[int]:
    """File descriptor 2 into a temp file while Ray's client connects (its C++ side prints a
    warning a second while it retries); yields the real stderr's descriptor. What was held is
    written out after, unless the connection failed (one line says why; -v: written out too)."""
    sys.stderr.flush()
    real = os.dup(2)
    ok = False
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield real
            ok = True
        finally:
            os.dup2(real, 2)
            os.close(real)
            if ok or replay:
                held.seek(0)
                os.write(2, held.read())


def _give_up(address: str, real_stderr: int) -> None:
    """Ray's client retries a cluster that answers but lets nobody in for minutes, and cannot be
    interrupted: nothing is written yet, so the process ends here, in one line."""
    os.write(real_stderr, (f"vidtrack run: error: could not connect to the Ray cluster at --address {address} "
                           f"within {RAY_CONNECT_TIMEOUT_S:g} s: it answers but does not let this driver in (token "
                           "authentication without RAY_AUTH_TOKEN, another Ray version, or not a Ray GCS "
                           "port)\n").encode())
    os._exit(EXIT_INCOMPLETE)


def _check_listening(address: str) -> None:
    """A host:port address (or ray://host:port) must accept a TCP connection: Ray's own client
    would wait a minute or more for a cluster that is not there."""
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or address in ("auto", "local"):
        return  # 'auto' and the like: Ray finds the cluster itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise StartError(f"could not connect to the Ray cluster at --address {address}: nothing answers "
                         f"on {host}:{port} ({e.strerror or e.__class__.__name__}); is the cluster up?") from None


def check_resources(cpus: float, gpus: float, nodes: list[dict[str, Any]]) -> None:
    """Refuse a request that no node of the cluster could ever hold (it would wait forever)."""
    need = {"CPU": cpus, "GPU": gpus}
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive", True)]
    if any(all(r.get(k, 0.0) >= v for k, v in need.items() if v > 0) for r in alive):
        return
    have = "; ".join(f"{r.get('CPU', 0):g} CPU, {r.get('GPU', 0):g} GPU" for r in alive) or "no nodes"
    raise UsageError(f"no node of the Ray cluster can hold an actor with --cpus-per-actor {cpus:g} "
                     f"--gpus-per-actor {gpus:g} (nodes: {have})")


def start_pool(spec: JobSpec, source: Storage, dest: Storage, ids: RunIds, todo: list[VideoTask],
               where: Where = Where.ACTORS) -> Any:
    """Actors started and the first one ready, or StartError with the real cause. When every
    video can be re-tracked from the detections stage, the actors are CPU actors that never
    build a model (no GPU requested), or one worker in this process (`Where.RETRACK_DRIVER`)."""
    args = (spec.config, source.uri, dest.uri, ids.params_id, ids.model_sha256, spec.endpoint_url)
    if where is Where.RETRACK_DRIVER:
        pool: Any = InProcessPool(*args, None, ids.run_id, ids.detections_id, False)
        pool.add(1)
        return pool
    import ray

    from jobs.run.pool import VideoWorkerPool
    from jobs.worker.actor import VideoWorker

    retrack_only = where is Where.RETRACK_ACTORS
    gpus = 0.0 if retrack_only else spec.gpus_per_actor
    check_resources(spec.cpus_per_actor, gpus, ray.nodes())
    actor_cls = ray.remote(VideoWorker).options(
        # two threads: `process` runs one video while `frames_done` answers the progress poll
        num_cpus=spec.cpus_per_actor, num_gpus=gpus, max_restarts=0, max_concurrency=2)
    threads = max(1, int(spec.cpus_per_actor))
    driver = ProcessRef.of(os.getpid())  # actors publish nothing once it is gone
    pool = VideoWorkerPool(lambda: actor_cls.remote(*args, threads, ids.run_id, ids.detections_id, not retrack_only,
                                                    driver))
    pool.add(min(_actor_count(spec, ray.cluster_resources(), gpus), len(todo)))
    try:
        _wait_first_ready(pool, spec.start_timeout)
    except BaseException:
        pool.shutdown()
        raise
    return pool


def _wait_first_ready(pool: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pool.idle:
        if not pool.starting:
            raise StartError("no actor could start")
        if time.monotonic() > deadline:
            raise StartError(f"no actor started within --start-timeout {timeout:g} s: the cluster cannot place "
                             "an actor with the requested resources, or loading the models hangs")
        for ev in pool.wait(timeout=1.0):
            if isinstance(ev, Started) and ev.info.error:
                raise StartError(f"actor could not start: {ev.info.error}", usage=ev.info.usage_error)


def _actor_count(spec: JobSpec, resources: dict[str, float], gpus: float) -> int:
    if spec.actors:
        return spec.actors
    if gpus > 0 and resources.get("GPU", 0) > 0:
        return max(1, int(resources["GPU"] / gpus))
    return max(1, int(resources.get("CPU", 1) / spec.cpus_per_actor))
