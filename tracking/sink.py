"""The annotated video's encoder: BGR frames to H.264 (libx264, yuv420p) in a faststart MP4,
at the source's presentation times.

A source at a constant rate keeps the encoder's time base 1/rate with frame i at pts i (the
bytes vidtrack always wrote); a variable-rate source's frames get their own presentation
times in a 1/90000 time base (`sink_time_base` decides from the tracked frames' timestamps),
so an output frame sits within one tick of its source frame, not re-timed to a constant rate.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from fractions import Fraction

import av
import av.error
import cv2
import numpy as np

from tracking.atomic import AtomicOutput
from tracking.config import FALLBACK_FPS

log = logging.getLogger("vidtrack." + __name__)

FINE_TIME_BASE = Fraction(1, 90000)  # MPEG's 90 kHz clock: fine enough for any source's times


def even_size(width: int, height: int) -> tuple[int, int]:
    """yuv420p needs even dimensions: odd sizes are padded by one pixel."""
    return width + (width & 1), height + (height & 1)


def sink_rate(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(int(FALLBACK_FPS))


def sink_time_base(timestamps_s: Sequence[float], fps: float) -> Fraction | None:
    """None when frame i at i/rate reproduces every timestamp within one 90 kHz tick (a constant
    rate: pts are frame indices); else FINE_TIME_BASE, in which each frame keeps its own time."""
    ts = np.asarray(timestamps_s, np.float64)
    nominal = np.arange(len(ts), dtype=np.float64) / float(sink_rate(fps))
    return None if np.all(np.abs(ts - nominal) <= float(FINE_TIME_BASE)) else FINE_TIME_BASE


class VideoSink(AtomicOutput):
    """Write BGR frames as H.264 (libx264, yuv420p) in MP4 with the moov atom at the
    front (faststart) so a browser plays it while downloading. With `time_base`, each
    frame's presentation time is the `timestamp_s` given to `write`; without, frame i is at i/fps.

    Writes to a temporary name beside `path` and renames on a clean `close()`; on an
    exception inside the `with` block the partial file is removed.
    """

    def __init__(self, path: str | os.PathLike[str], width: int, height: int, fps: float,
                 crf: int = 23, preset: str = "veryfast", time_base: Fraction | None = None) -> None:
        super().__init__(path)
        self.width, self.height = width, height
        self.out_w, self.out_h = even_size(width, height)
        self.time_base, self._last_pts = time_base, -1
        self._container = av.open(str(self._tmp), mode="w", format="mp4",
                                  options={"movflags": "+faststart"})
        self._stream = self._container.add_stream("libx264", rate=sink_rate(fps))
        self._stream.width, self._stream.height = self.out_w, self.out_h
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": str(crf), "preset": preset}
        self._stream.thread_type = "AUTO"
        if time_base is not None:
            self._stream.codec_context.time_base = time_base
        self.frames = 0

    def write(self, bgr: np.ndarray, timestamp_s: float | None = None) -> None:
        if bgr.shape[:2] != (self.height, self.width):
            raise ValueError(f"frame of shape {bgr.shape} does not match sink size {self.width}x{self.height}")
        if (self.out_w, self.out_h) != (self.width, self.height):
            bgr = cv2.copyMakeBorder(bgr, 0, self.out_h - self.height, 0, self.out_w - self.width,
                                     cv2.BORDER_REPLICATE)
        frame = av.VideoFrame.from_ndarray(bgr, format="bgr24")
        frame.pts = self._pts(timestamp_s)
        if self.time_base is not None:
            frame.time_base = self.time_base
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def _pts(self, timestamp_s: float | None) -> int:
        if self.time_base is None:
            return self.frames
        if timestamp_s is None:
            raise ValueError(f"{self.path}: a sink with time base {self.time_base} needs each frame's timestamp_s")
        self._last_pts = max(round(timestamp_s / self.time_base), self._last_pts + 1)  # strictly increasing
        return self._last_pts

    def _finish(self) -> None:
        """Flush the encoder and close the container."""
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()

    def _discard(self) -> None:
        try:
            self._container.close()
        except av.error.FFmpegError as e:  # closing a half-written file can fail; the file is removed anyway
            log.debug("closing aborted sink %s: %s", self._tmp, e)
