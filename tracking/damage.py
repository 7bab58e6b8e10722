"""Damage the decoder conceals: a video whose frames decode "fine" after FFmpeg hid an error.

FFmpeg's decoders conceal damage (noise in a keyframe, a lost slice): they log `error while
decoding MB ...` and return every frame, the damaged ones patched from their neighbours, so
neither an exception nor a corrupt packet flag says anything, and the tracks of the damaged
stretch quietly go missing. The decoder says it twice, and both are read here:
- its log: an error-level message while a packet decodes marks that packet's frame damaged
  (FFmpeg's messages reach Python only with PyAV's logging on, at ERROR here; captured for the
  whole process, as FFmpeg logs from its own threads too: one video decodes at a time per process);
- the frame's corrupt flag (`AV_FRAME_FLAG_CORRUPT`), which some decoders set instead.
A codec that detects nothing (VP9 with noise in a keyframe, measured) cannot be caught this way.
"""

from __future__ import annotations

import av
import av.logging

av.logging.set_level(av.logging.ERROR)  # FFmpeg's errors reach Python (the capture below; else its logger)


class DecodeErrors:
    """The decoder's error messages during one video's decode, attributed to frames by pts."""

    def __init__(self, decoder: str) -> None:
        self.decoder = decoder  # the codec's log name (h264, hevc, mpeg4, ...): the demuxer's own errors
        # (a file cut short: "File ended prematurely") are the completeness checks' business
        self._capture = av.logging.Capture(local=False)
        self._logs: list[tuple[int, str, str]] = self._capture.__enter__()
        self._seen = 0
        self.damaged_pts: dict[int | None, str] = {}  # the damaged packets' pts -> the decoder's message

    def after_packet(self, pts: int | None) -> None:
        """Call after each packet's decode: error messages logged meanwhile mark the frame with
        this pts damaged (the packet's own, or the corrupt-flagged packet just before it)."""
        new = [m for level, name, m in self._logs[self._seen:] if level <= av.logging.ERROR and name == self.decoder]
        self._seen = len(self._logs)
        if new:
            self.damaged_pts.setdefault(pts, " / ".join(m.strip() for m in new[:2]))

    def damage(self, frame: av.VideoFrame) -> str | None:
        """Why this frame is damaged, or None."""
        if frame.pts in self.damaged_pts:
            return self.damaged_pts[frame.pts]
        return "the decoder flagged the frame corrupt" if frame.is_corrupt else None

    def unplaced(self) -> str | None:
        """A damaged packet whose frame never came out (the decoder dropped it), if any."""
        return next(iter(self.damaged_pts.values()), None)

    def close(self) -> None:
        self._capture.__exit__(None, None, None)
