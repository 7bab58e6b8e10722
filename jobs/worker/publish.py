"""Publishing one video's outputs, all or nothing: the annotated video, then the tracks, then
`_done` last (its presence means complete); an attempt that fails after publishing some of
them removes them again, so only `_done` videos have outputs. `_done` names its run, and is
not published once the run's driver is gone (no manifest would hold its row): the attempt
is abandoned and its outputs removed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from jobs.dataset.layout import DatasetLayout
from jobs.dataset.manifest import Attempt, now_iso
from jobs.dataset.markers import DoneMarker
from jobs.plan import VideoTask
from tracking.modelref import file_sha256

if TYPE_CHECKING:
    from tracking.pipeline import VideoOutputs, VideoSummary

log = logging.getLogger("vidtrack." + __name__)


class DriverGone(RuntimeError):
    """The run's driver no longer runs: what the actor would publish now, no manifest would record."""


def publish_outputs(layout: DatasetLayout, task: VideoTask, outputs: VideoOutputs, summary: VideoSummary,
                    row: Attempt, driver_alive: Callable[[], None] = lambda: None) -> None:
    """Video, then tracks, then `_done` last, once `driver_alive()` has not raised (DriverGone);
    on any error, remove what was published."""
    storage = layout.storage
    try:
        if outputs.video is not None:
            storage.upload(outputs.video, layout.video(task.video_id))
        storage.upload(outputs.tracks, layout.tracks(task.video_id))
        storage.delete(layout.failed(task.video_id))
        marker = DoneMarker(
            task.video_id, task.name, task.identity, params_id=layout.params_id, run_id=row.run_id, attempt=row.attempt,
            frames=row.frames, frames_declared=row.frames_declared, rows=row.rows,
            tracks_sha256=file_sha256(outputs.tracks), fps=summary.fps, width=summary.width,
            height=summary.height, tracks_per_class=summary.tracks_per_class,
            tracker_frames=summary.tracker_frames, refine=summary.refine, finished_at=now_iso(),
            start_time=summary.start_time)
        driver_alive()  # right before: a driver killed while this attempt ran records nothing
        storage.put_bytes(layout.done(task.video_id), marker.to_bytes())  # last: the video is complete
    except Exception:
        remove_outputs(layout, task)
        raise


def remove_outputs(layout: DatasetLayout, task: VideoTask) -> None:
    """Best effort: outputs of a video that is not complete must not stay beside the dataset."""
    for key in (layout.done(task.video_id), layout.tracks(task.video_id), layout.video(task.video_id)):
        try:
            layout.storage.delete(key)
        except Exception as e:  # the storage is failing: say so; readers still join on _done
            log.error("could not remove %s of an incomplete video: %s", key, e)
