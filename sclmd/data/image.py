"""Any face image (a file, or a frame of a video) to one uint8 RGB square.

Whatever the file's mode (greyscale, palette, alpha, CMYK, 16-bit, ...) the result
is [size, size, 3] RGB; an unusable image ends in `ClipRejected` with a reason a
person can act on.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sclmd.errors import ClipRejected

# Transparent pixels become mid-grey rather than black, so they read as "no
# information" to the model instead of as dark skin or hair.
_ALPHA_BACKGROUND = (128, 128, 128, 255)
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_UINT16_TO_UINT8 = 257  # 65535 / 255


def _open_image(path: Path) -> Image.Image:
    # verify() checks the file's structure without decoding pixels, and leaves the
    # image unusable, so the file is opened a second time to load the pixels (which
    # catches truncated pixel data).
    try:
        with Image.open(path) as probe:
            probe.verify()
        image = Image.open(path)
        image.load()
    except FileNotFoundError:
        raise ClipRejected("file not found", str(path)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ClipRejected(f"not a readable image (PIL: {error})", str(path)) from None
    except Image.DecompressionBombError as error:
        raise ClipRejected(f"image too large to decode safely ({error})", str(path)) from None
    return image


def _to_rgb(image: Image.Image, where: str | None) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _ALPHA_MODES or (mode in {"P", "L"} and "transparency" in image.info):
        background = Image.new("RGBA", image.size, _ALPHA_BACKGROUND)
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    if mode.startswith("I;16") or mode == "I":
        # PIL's own conversion clips 16/32-bit values at 255 (nearly all white); these
        # modes hold 16-bit samples, so scale them down instead.
        levels = np.asarray(image, dtype=np.float64) / _UINT16_TO_UINT8
        grey = np.clip(np.round(levels), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as error:
        raise ClipRejected(f"cannot convert image mode {mode} to RGB ({error})", where) from None


def load_rgb(path: Path, max_side: int | None = None) -> np.ndarray:
    """Any image file as [H, W, 3] uint8 RGB (EXIF rotation applied; alpha on grey; CMYK,
    greyscale, 16-bit converted), shrunk to `max_side` on its longer side when larger.
    An unusable file ends in `ClipRejected` naming it and what is wrong."""
    image = _to_rgb(ImageOps.exif_transpose(_open_image(Path(path))), str(path))
    if max_side and max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.array(image, dtype=np.uint8)


def _opened(img: Image.Image | Path, path_for_errors: str | Path | None) -> tuple[Image.Image, str | None]:
    """(the image, the name errors give): a decoded picture as is, a path opened and checked."""
    if isinstance(img, Image.Image):
        return img, None if path_for_errors is None else str(path_for_errors)
    return _open_image(Path(img)), str(path_for_errors if path_for_errors is not None else img)


def _crop_box(
    width: int, height: int, center: tuple[float, float] | None, box: float | None
) -> tuple[float, float, float, float]:
    """The square (left, top, right, bottom) to keep, inside the image."""
    side = min(width, height) if box is None else min(box * height, width, height)
    center_x, center_y = center if center is not None else (0.5, 0.5)
    left = min(max(center_x * width - side / 2, 0.0), width - side)
    top = min(max(center_y * height - side / 2, 0.0), height - side)
    return left, top, left + side, top + side


def prepare_face(
    img: Image.Image | Path,
    size: int,
    *,
    min_px: int,
    center: tuple[float, float] | None = None,
    box: float | None = None,
    path_for_errors: str | Path | None = None,
) -> np.ndarray:
    """uint8 RGB [size, size, 3]: a square crop of `img`, resized with LANCZOS.

    `center` is the face centre (x, y) in 0-1 of the image; `box` the square's side
    as a fraction of the image height.  Without `center` the square is centred;
    without `box` it is as large as the image allows.  The square is moved (never
    shrunk) to stay inside the image.
    """
    image, where = _opened(img, path_for_errors)
    width, height = image.size
    if width < min_px or height < min_px:
        raise ClipRejected(
            f"image too small: {width}x{height} px, need at least {min_px} px on each side",
            where,
        )
    image = _to_rgb(ImageOps.exif_transpose(image), where)
    width, height = image.size  # a 90-degree EXIF rotation swaps them
    left, top, right, bottom = _crop_box(width, height, center, box)
    if right - left < min_px:
        raise ClipRejected(f"face crop too small: {right - left:.0f} px, need at least {min_px} px", where)
    face = image.resize((size, size), Image.Resampling.LANCZOS, box=(left, top, right, bottom))
    return np.array(face, dtype=np.uint8)


def face_from_video(
    path: Path,
    time: float,
    size: int,
    *,
    min_px: int,
    center: tuple[float, float] | None,
    box: float | None,
    detect: bool = False,
    padding: float = 0.3,
) -> np.ndarray:
    """`prepare_face` (or with `detect`, `detected_face`) on the video frame nearest `time` seconds into `path`."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise ClipRejected("file not found", where)
    if time < 0:
        raise ClipRejected(f"frame time {time:g} s is negative", where)
    try:
        frame = _frame_nearest(path, time)
    except (av.FFmpegError, ValueError) as error:
        raise ClipRejected(f"not a readable video (PyAV: {error})", where) from None
    if detect:
        return detected_face(frame, size, min_px=min_px, center=center, padding=padding, path_for_errors=where)
    return prepare_face(frame, size, min_px=min_px, center=center, box=box, path_for_errors=where)


def _frame_nearest(path: Path, time: float) -> Image.Image:
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ClipRejected("no video stream", str(path))
        stream = container.streams.video[0]
        # Seeking lands on the key frame at or before `time`; decoding on from there
        # reaches the nearest frame without decoding the whole video.
        container.seek(int(time / stream.time_base), stream=stream)
        best: av.VideoFrame | None = None
        best_distance = float("inf")
        frame_seconds = 1 / float(stream.average_rate or stream.guessed_rate or 25)
        for frame in container.decode(stream):
            if frame.time is None:  # no timestamp: cannot tell where it is
                continue
            distance = abs(frame.time - time)
            if distance <= best_distance:
                best, best_distance = frame, distance
            if frame.time > time:
                break
        if best is None or best_distance > frame_seconds:
            end = "" if best is None else f" (last frame at {best.time:.3f} s)"
            raise ClipRejected(f"frame time {time:g} s is beyond the end of the video{end}", str(path))
        return best.to_image()


def detected_face(
    img: Image.Image | Path,
    size: int,
    *,
    min_px: int,
    center: tuple[float, float] | None = None,
    padding: float = 0.3,
    path_for_errors: str | Path | None = None,
) -> np.ndarray:
    """uint8 RGB [size, size, 3]: the face a detector finds in `img`, aligned by its eyes.

    With `center` (x, y in 0-1, AVSpeech's face centre) the detected face nearest it is taken,
    else the largest.  No face, or one narrower than `min_px`, is a `ClipRejected` with the reason.
    Detection, landmarks and alignment: `sclmd.data.faces` (dlib).
    """
    from sclmd.data.faces import face_finder, largest, nearest

    image, where = _opened(img, path_for_errors)
    image = _to_rgb(ImageOps.exif_transpose(image), where)
    if max(image.size) > 2048:  # detection cost grows with pixels; a face keeps hundreds of them
        image = image.copy()
        image.thumbnail((2048, 2048), Image.Resampling.LANCZOS)
    rgb = np.asarray(image, dtype=np.uint8)
    finder = face_finder()
    faces = finder.detect(rgb)
    if center is not None:
        face = nearest(faces, (center[0] * rgb.shape[1], center[1] * rgb.shape[0]))
    else:
        face = largest(faces)
    if face is None:
        raise ClipRejected("no face found by the face detector", where)
    width = face.box[2] - face.box[0]
    if width < min_px:
        raise ClipRejected(f"detected face too small: {width} px, need at least {min_px} px", where)
    return finder.aligned(rgb, face, size, padding)
