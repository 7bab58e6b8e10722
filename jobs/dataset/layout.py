"""Where everything lives in the output dataset (one folder per params_id):

    <params_id>/config.json                          resolved parameters, model identity, versions
    <params_id>/tracks/video_id=<id>/part-0.parquet  track records, hive-partitioned by video
    <params_id>/videos/<id>.mp4                      annotated video
    <params_id>/manifest/run_id=<run>/part-0.parquet one row per video and attempt
    <params_id>/_done/<id>.json                      written last: the video is complete (DoneMarker)
    <params_id>/_failed/<id>.json                    the video failed for its own reasons (FailedMarker);
                                                     skipped until the source object changes
    <params_id>/_journal/run_id=<run>/<n>.json       attempt records of a run still going (or killed)
    <params_id>/_lease/<id>.json                     a run is processing this video right now
    <params_id>/_index/done.parquet, failed.parquet  the markers as last read, by version: a cache that
                                                     makes reading them one LIST per 1,000 (jobs/dataset/index.py)
    <params_id>/_index/report.json                   the `_done` markers report.html was built from

Beside the datasets, `_detections/<detections_id>/` holds the detections stage (jobs/detections.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from jobs.storage import Storage


@dataclass(frozen=True)
class DatasetLayout:
    storage: Storage
    params_id: str

    def key(self, *parts: str) -> str:
        return "/".join((self.params_id, *parts))

    @property
    def config(self) -> str:
        return self.key("config.json")

    def tracks(self, video_id: str) -> str:
        return self.key("tracks", f"video_id={video_id}", "part-0.parquet")

    def video(self, video_id: str) -> str:
        return self.key("videos", f"{video_id}.mp4")

    def done(self, video_id: str) -> str:
        return self.key("_done", f"{video_id}.json")

    def failed(self, video_id: str) -> str:
        return self.key("_failed", f"{video_id}.json")

    def lease(self, video_id: str) -> str:
        return self.key("_lease", f"{video_id}.json")

    def manifest(self, run_id: str) -> str:
        return self.key("manifest", f"run_id={run_id}", "part-0.parquet")

    def journal_prefix(self, run_id: str) -> str:
        return self.key("_journal", f"run_id={run_id}") + "/"

    def journal_lease(self, run_id: str) -> str:
        return self.key("_journal", f"run_id={run_id}.lease")

    def journal(self, run_id: str, seq: int) -> str:
        return self.journal_prefix(run_id) + f"{seq:07d}.json"

    def write_config(self, data: dict[str, Any]) -> None:
        """config.json is written once per params_id; a rerun leaves it untouched."""
        if not self.storage.exists(self.config):
            self.storage.put_bytes(self.config, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
