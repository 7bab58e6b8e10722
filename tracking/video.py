"""Video in and out: a frame generator with `VideoInfo`, and an H.264 `VideoSink`.

Decoding and encoding go through PyAV (FFmpeg's libraries, libx264 included in
its wheels). Frames are BGR ``uint8`` arrays of shape (H, W, 3) in display
orientation (container rotation applied). Timestamps are presentation times
from the container, in seconds from the first frame, not ``index / fps``.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import av.error
import cv2
import numpy as np

from tracking.config import FALLBACK_FPS
from tracking.damage import DecodeErrors
from tracking.sink import VideoSink  # noqa: F401  (the encoder: tracking/sink.py, re-exported)

log = logging.getLogger("vidtrack." + __name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class VideoError(Exception):
    """A video that cannot be processed: the message names the file and the reason.
    Always the video's own problem (corrupt, empty, unsupported), never the machine's."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"{os.fspath(path)}: {reason}")
        self.path = os.fspath(path)
        self.reason = reason


class IncompleteVideoError(VideoError):
    """The video decoded only in part: fewer frames or less time than its container
    declares, a truncated or corrupt packet, or a decode error mid-stream. Its partial
    outputs are never published."""


class DamagedVideoError(VideoError):
    """The video decodes to the end, but the decoder concealed damage in it (tracking/damage.py):
    its frames there are patched guesses, so the video is never published as complete. The
    message names the first damaged frame."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container says. `frame_count` and `duration_s` are the header's claims
    (0 if unknown): frames are counted as they decode, and a decode that ends short of
    either claim raises `IncompleteVideoError`. `fps` is the container's average rate,
    0.0 when it declares none (the pipeline then derives a rate from timestamps)."""

    path: str
    width: int  # display width, after rotation
    height: int
    fps: float
    frame_count: int
    rotation: int  # degrees counter-clockwise applied to decoded frames
    codec: str
    duration_s: float
    start_time: str = ""  # when the recording started, as the container says (`creation_time`), else ""


# the pixels of a frame decoded without them (`VideoReader.frames(pixels=...)`): (0, 0, 3)
NO_PIXELS = np.zeros((0, 0, 3), np.uint8)
NO_PIXELS.setflags(write=False)


@dataclass(frozen=True)
class Frame:
    index: int  # 0-based, in decode order
    timestamp_s: float  # presentation time relative to the first frame
    bgr: np.ndarray  # (H, W, 3) uint8; NO_PIXELS when the caller asked for none

    @property
    def has_pixels(self) -> bool:
        return self.bgr.size > 0


class VideoReader:
    """Open a video file (or a MOTChallenge-style folder of images) for decoding.

    Use as a context manager; iterate for `Frame`s. Any failure, at open or mid-
    stream, raises `VideoError` naming the file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._container: av.container.InputContainer | None = None
        self._first: av.VideoFrame | None = None
        if not self.path.exists():
            raise VideoError(self.path, "file does not exist")
        if self.path.is_dir():
            self._images = _image_files(self.path)
            self.info = _image_info(self.path, self._images)
        else:
            self._images = []
            self.info = self._open_container()

    # -- opening -----------------------------------------------------------------
    def _open_container(self) -> VideoInfo:
        size = self.path.stat().st_size
        if size == 0:
            raise VideoError(self.path, "file is empty (0 bytes)")
        try:
            container = av.open(str(self.path), mode="r")
        except (av.error.FFmpegError, UnicodeDecodeError) as e:
            raise VideoError(self.path, f"not a readable video container ({e.__class__.__name__}: {e})") from e
        if not container.streams.video:
            container.close()
            raise VideoError(self.path, "container has no video stream")
        self._container = container
        stream = container.streams.video[0]
        self._errors = DecodeErrors(stream.codec_context.name)
        # Slice threading only: FFmpeg's frame threading drops a packet that fails to decode
        # without reporting it (a truncated file then looks like a shorter, complete one).
        # Measured no slower on the shared H.264 clips.
        stream.thread_type = "SLICE"
        cc = stream.codec_context
        if not cc.width or not cc.height:
            self.close()
            raise VideoError(self.path, "video stream has no frame size (unsupported or corrupt)")
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        if not math.isfinite(fps) or fps <= 0:
            fps = 0.0  # resolved from timestamps once frames decode
        # Decode the first frame now: it carries the display rotation, and a file
        # with no decodable frame fails here, before any output exists.
        self._decoder = self._decode(container, stream)
        try:
            self._first = next(self._decoder)
        except StopIteration:
            self.close()
            raise VideoError(self.path, "no frames could be decoded") from None
        except av.error.FFmpegError as e:
            self.close()
            raise VideoError(self.path, f"first frame does not decode ({e.__class__.__name__}: {e})") from e
        rotation = _rotation(self._first, stream)
        w, h = (cc.height, cc.width) if rotation % 180 else (cc.width, cc.height)
        return VideoInfo(str(self.path), w, h, fps, int(stream.frames or 0), rotation, cc.name,
                         _declared_duration(container, stream),
                         str(container.metadata.get("creation_time") or stream.metadata.get("creation_time") or ""))

    def _decode(self, container: av.container.InputContainer,
                stream: av.video.stream.VideoStream) -> Iterator[av.VideoFrame]:
        """Frames packet by packet. A packet the demuxer marks corrupt is decoded all the same:
        mid-stream it is damage only if the decoder then reports an error (two MPEG-TS files
        joined byte for byte, as recorders do, flag the packet at the join and decode cleanly);
        as the last packet, the file was cut short, and the video fails instead of ending early."""
        suspect: av.Packet | None = None  # the latest corrupt-flagged packet, until a clean one decodes
        for packet in container.demux(stream):
            if packet.size == 0 and suspect is not None:  # the demuxer's final flush, after a cut-short packet
                break
            frames = packet.decode()
            self._errors.after_packet(suspect.pts if suspect is not None else packet.pts)
            if packet.is_corrupt:
                suspect = packet
            elif packet.size:  # a clean packet decoded after it: the corrupt one was not the last
                suspect = None
            yield from frames
        if suspect is not None:
            raise IncompleteVideoError(self.path, f"truncated or corrupt packet at {suspect.pos}, the last one "
                                                  f"(file cut short or still being written?)")

    # -- iteration ---------------------------------------------------------------
    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def frames(self, pixels: Callable[[int], bool] | None = None) -> Iterator[Frame]:
        """Every frame in order; with `pixels`, a frame whose index it refuses is still decoded
        (and checked) but not converted to BGR: its `bgr` is NO_PIXELS (an image file is read
        either way: reading it is its decode)."""
        if self._images:
            yield from _iter_images(self._images, self.info.fps)
        else:
            yield from self._iter_container(pixels)

    def _iter_container(self, pixels: Callable[[int], bool] | None = None) -> Iterator[Frame]:
        t0: float | None = None
        index = 0
        last_t = -1.0
        fps = self.info.fps or FALLBACK_FPS
        k = self.info.rotation // 90
        try:
            for frame in itertools.chain([self._first] if self._first is not None else [], self._decoder):
                t = frame.time
                if t is None:  # no PTS: fall back to the nominal rate
                    t = (t0 or 0.0) + index / fps
                if t0 is None:
                    t0 = t
                ts = t - t0
                if ts <= last_t:  # keep timestamps strictly increasing (broken/duplicate PTS)
                    ts = last_t + 1e-6
                last_t = ts
                _check_damage(self.path, self._errors, frame, index, ts)
                if pixels is not None and not pixels(index):
                    yield Frame(index, ts, NO_PIXELS)
                    index += 1
                    continue
                bgr: np.ndarray = frame.to_ndarray(format="bgr24")
                if k:
                    bgr = np.ascontiguousarray(np.rot90(bgr, k=k))
                if bgr.shape[:2] != (self.info.height, self.info.width):  # the video's own oddity, not ours
                    raise VideoError(self.path, f"frame {index} is {bgr.shape[1]}x{bgr.shape[0]}, the video started at "
                                                f"{self.info.width}x{self.info.height}: size changes mid-stream are "
                                                "not supported")
                yield Frame(index, ts, bgr)
                index += 1
        except av.error.FFmpegError as e:
            raise IncompleteVideoError(
                self.path, f"decode failed after {index} frames ({e.__class__.__name__}: {e})") from e
        if (why := self._errors.unplaced()) is not None:
            raise DamagedVideoError(self.path, f"damaged after frame {index - 1}: the decoder concealed an error "
                                               f"({why}) in a frame it then dropped")
        _check_complete(self.path, self.info, index, last_t)

    # -- lifecycle ---------------------------------------------------------------
    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
            self._errors.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _image_info(folder: Path, images: list[Path]) -> VideoInfo:
    """A folder of numbered images as a video: its size from the first image, its rate from
    MOTChallenge's seqinfo.ini beside it (else FALLBACK_FPS)."""
    if not images:
        raise VideoError(folder, f"folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
    first = cv2.imread(str(images[0]), cv2.IMREAD_COLOR)
    if first is None:
        raise VideoError(images[0], "not a readable image")
    fps = _seqinfo_fps(folder) or FALLBACK_FPS
    h, w = first.shape[:2]
    return VideoInfo(str(folder), w, h, fps, len(images), 0, "image-sequence", len(images) / fps)


def _iter_images(images: list[Path], fps: float) -> Iterator[Frame]:
    for i, p in enumerate(images):
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise VideoError(p, "not a readable image")
        yield Frame(i, i / fps, img)


def _check_damage(path: Path, errors: DecodeErrors, frame: av.VideoFrame, index: int, ts: float) -> None:
    why = errors.damage(frame)
    if why is not None:
        raise DamagedVideoError(path, f"frame {index} (at {ts:.2f} s) is damaged: the decoder concealed "
                                      f"an error ({why}); its tracks would be guesses")


def _check_complete(path: Path, info: VideoInfo, frames: int, last_ts: float) -> None:
    """Decoded against declared: fewer frames than the header counts, or frames ending
    well before the declared duration, means the file is incomplete (a truncated MP4
    whose index is at the front, a Matroska file cut while being written)."""
    declared, duration = info.frame_count, info.duration_s
    if declared and frames < declared:
        raise IncompleteVideoError(path, f"decoded {frames} of the {declared} frames its container declares")
    if duration > 0 and frames:
        step = 1.0 / (info.fps or FALLBACK_FPS)
        covered = last_ts + step
        if covered < duration - max(2 * step, 0.01 * duration):
            raise IncompleteVideoError(path, f"decoded frames cover {covered:.2f} s of the "
                                             f"{duration:.2f} s its container declares")


def _rotation(frame: av.VideoFrame, stream: av.video.stream.VideoStream) -> int:
    """Counter-clockwise rotation (0/90/180/270) that puts decoded frames in display
    orientation: the frame's display matrix, else the legacy 'rotate' tag."""
    angle = round(frame.rotation or 0)
    if not angle and (tag := stream.metadata.get("rotate")):
        try:
            angle = -int(tag)
        except ValueError:
            log.warning("%s: ignoring non-numeric rotate tag %r", stream.container.name, tag)
    return (round(angle / 90) * 90) % 360


def _declared_duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    """The video stream's declared duration in seconds; the container's when the file has
    no other stream to stretch it (audio often runs longer); 0.0 when neither is known."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and len(container.streams) == 1:
        return float(container.duration / av.time_base)
    return 0.0


def _image_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=lambda p: (int(m.group()) if (m := re.search(r"\d+", p.stem)) else -1, p.name))


def _seqinfo_fps(folder: Path) -> float | None:
    """MOTChallenge `seqinfo.ini` beside an `img1/` folder gives the frame rate."""
    import configparser

    ini = folder.parent / "seqinfo.ini"
    if not ini.exists():
        return None
    cp = configparser.ConfigParser()
    cp.read(ini)
    try:
        return float(cp["Sequence"]["frameRate"])
    except (KeyError, ValueError):
        return None


def fps_from_timestamps(timestamps_s: list[float]) -> float:
    """Frame rate from presentation times (median frame interval), for containers whose
    header reports none; FALLBACK_FPS when there are too few frames to tell."""
    if len(timestamps_s) < 2:
        return FALLBACK_FPS
    dt = float(np.median(np.diff(timestamps_s)))
    return 1.0 / dt if dt > 0 else FALLBACK_FPS


def probe(path: str | os.PathLike[str]) -> dict[str, object]:
    """Codec, pixel format, size, frame count (decoded), fps and whether the moov
    atom precedes mdat, for checking outputs the way ffprobe would."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    moov, mdat = head.find(b"moov"), head.find(b"mdat")
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(s))
        return {
            "codec": s.codec_context.name,
            "pix_fmt": s.codec_context.pix_fmt,
            "width": s.codec_context.width,
            "height": s.codec_context.height,
            "fps": float(s.average_rate) if s.average_rate else 0.0,
            "frames": n,
            "faststart": moov != -1 and (mdat == -1 or moov < mdat),
        }
