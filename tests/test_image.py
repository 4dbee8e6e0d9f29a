"""Face images and video frames: any mode to RGB, crops, and clear rejections."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sclmd.data.image import face_from_video, prepare_face
from sclmd.errors import ClipRejected
from tests.media import RED, tone, write_image, write_m4a, write_mp4

SIZE = 32
MIN_PX = 16


def face(source: Image.Image | Path, **crop) -> np.ndarray:
    return prepare_face(source, SIZE, min_px=MIN_PX, **crop)


def rejection(path: Path) -> str:
    with pytest.raises(ClipRejected) as caught:
        face(path)
    assert caught.value.path == str(path)
    return caught.value.reason


def is_red(pixel: np.ndarray, tolerance: int = 40) -> bool:
    return bool(np.all(np.abs(pixel.astype(int) - RED) < tolerance))


# --- bad inputs ---------------------------------------------------------------------


def test_corrupt_png_is_rejected(tmp_path: Path) -> None:
    path = write_image(tmp_path / "face.png", "RGB", (64, 64))
    raw = bytearray(path.read_bytes())
    raw[40:80] = b"\x00" * 40  # inside the first chunks: broken CRCs and header
    path.write_bytes(bytes(raw))
    assert "not a readable image" in rejection(path)


def test_truncated_jpeg_is_rejected(tmp_path: Path) -> None:
    path = write_image(tmp_path / "face.jpg", "RGB", (64, 64))
    path.write_bytes(path.read_bytes()[:300])
    assert "not a readable image" in rejection(path)


def test_text_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "face.jpg"
    path.write_text("not an image\n")
    assert "not a readable image" in rejection(path)


def test_one_pixel_image_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), RED).save(path)
    assert rejection(path) == f"image too small: 1x1 px, need at least {MIN_PX} px on each side"


def test_tiny_face_crop_is_rejected(tmp_path: Path) -> None:
    path = write_image(tmp_path / "wide.png", "RGB", (200, 100))
    with pytest.raises(ClipRejected, match="face crop too small"):
        face(path, center=(0.5, 0.5), box=0.1)  # a 10 px square


# --- modes --------------------------------------------------------------------------


def test_greyscale_converts_to_grey_rgb(tmp_path: Path) -> None:
    result = face(write_image(tmp_path / "grey.png", "L", (48, 48)))
    assert result.shape == (SIZE, SIZE, 3) and result.dtype == np.uint8
    assert np.array_equal(result[..., 0], result[..., 1])
    assert np.array_equal(result[..., 1], result[..., 2])


def test_rgba_transparent_parts_become_mid_grey(tmp_path: Path) -> None:
    result = face(write_image(tmp_path / "cutout.png", "RGBA", (48, 48)))
    assert result.shape == (SIZE, SIZE, 3)
    assert np.all(np.abs(result[0, 0].astype(int) - 128) <= 1)  # transparent corner
    assert is_red(result[SIZE // 2, SIZE // 2])  # the opaque disc keeps its colour


def test_cmyk_jpeg_converts_to_rgb(tmp_path: Path) -> None:
    path = write_image(tmp_path / "print.jpg", "CMYK", (48, 48))
    assert Image.open(path).mode == "CMYK"
    result = face(path)
    assert result.shape == (SIZE, SIZE, 3)
    assert is_red(result[SIZE // 2, SIZE // 2], tolerance=60)


@pytest.mark.parametrize(
    ("mode", "suffix"),
    [
        ("P", ".png"),
        ("LA", ".png"),
        ("1", ".png"),
        ("I;16", ".png"),
        ("RGB", ".webp"),
        ("RGB", ".bmp"),
    ],
)
def test_other_modes_and_formats_convert(tmp_path: Path, mode: str, suffix: str) -> None:
    path = write_image(tmp_path / f"face{suffix}", mode, (48, 40))
    result = face(path)
    assert result.shape == (SIZE, SIZE, 3) and result.dtype == np.uint8
    assert result.std() > 5  # the disc is still visible: not all one level


def test_16bit_greyscale_keeps_its_levels(tmp_path: Path) -> None:
    levels = np.full((40, 40), 100 * 257, dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(levels).save(path)  # uint16 -> mode I;16
    assert np.all(face(path) == 100)  # not clipped to white


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # Stored landscape with the red half on the left; EXIF 6 says "rotate 90 degrees
    # clockwise to view", which puts the red half on top.
    image = Image.new("RGB", (64, 48), (20, 20, 200))
    image.paste(RED, (0, 0, 32, 48))
    exif = image.getexif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=95)
    result = face(path)
    assert is_red(result[2, SIZE // 2]) and not is_red(result[-3, SIZE // 2])


# --- crops --------------------------------------------------------------------------


def blob_image(width: int, height: int, center: tuple[float, float], radius: int) -> Image.Image:
    image = Image.new("RGB", (width, height), (30, 30, 30))
    x, y = center[0] * width, center[1] * height
    image.paste(RED, (int(x - radius), int(y - radius), int(x + radius), int(y + radius)))
    return image


def test_crop_around_a_centre_puts_the_face_in_the_middle() -> None:
    image = blob_image(160, 100, (0.7, 0.3), radius=10)
    result = face(image, center=(0.7, 0.3), box=0.4)  # a 40 px square around the blob
    assert is_red(result[SIZE // 2, SIZE // 2])
    assert not is_red(result[1, 1]) and not is_red(result[-2, -2])
    # The blob (20 px of the 40 px crop) covers the middle half of the output.
    red_columns = np.flatnonzero([is_red(p) for p in result[SIZE // 2]])
    assert abs(red_columns.min() - SIZE / 4) <= 2 and abs(red_columns.max() - 3 * SIZE / 4) <= 2


def test_crop_near_the_edge_is_moved_inside() -> None:
    image = blob_image(160, 100, (0.95, 0.5), radius=4)
    result = face(image, center=(0.97, 0.5), box=0.5)
    assert result.shape == (SIZE, SIZE, 3)
    # The 50 px square ends at the right edge, so the blob sits right of the middle.
    red_columns = np.flatnonzero([is_red(p) for p in result[SIZE // 2]])
    assert red_columns.min() > SIZE / 2


def test_default_crop_is_the_centred_square() -> None:
    image = blob_image(200, 100, (0.5, 0.5), radius=25)
    result = face(image)
    red_columns = np.flatnonzero([is_red(p) for p in result[SIZE // 2]])
    assert abs(red_columns.min() - SIZE / 4) <= 2 and abs(red_columns.max() - 3 * SIZE / 4) <= 2


def test_image_object_errors_name_the_given_path() -> None:
    with pytest.raises(ClipRejected) as caught:
        prepare_face(Image.new("RGB", (4, 4)), SIZE, min_px=MIN_PX, path_for_errors="video.mp4")
    assert caught.value.path == "video.mp4"


# --- video frames -------------------------------------------------------------------


@pytest.fixture(scope="module")
def talking_head(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mp4(
        tmp_path_factory.mktemp("video") / "talk.mp4",
        2.0,
        10,
        (128, 96),
        16000,
        face_center=(0.3, 0.6),
    )


def video_face(path: Path, time: float) -> np.ndarray:
    return face_from_video(path, time, SIZE, min_px=MIN_PX, center=(0.3, 0.6), box=0.4)


def test_face_from_video_crops_around_the_centre(talking_head: Path) -> None:
    result = video_face(talking_head, 1.0)
    assert result.shape == (SIZE, SIZE, 3)
    assert is_red(result[SIZE // 2, SIZE // 2])
    assert not is_red(result[0, 0])


def test_face_from_video_takes_the_frame_at_the_time(talking_head: Path) -> None:
    # The background brightens frame by frame, so a later frame has a lighter corner.
    early, late = video_face(talking_head, 0.2), video_face(talking_head, 1.8)
    assert int(late[0, 0].mean()) - int(early[0, 0].mean()) > 100


def test_face_time_beyond_the_end_is_rejected(talking_head: Path) -> None:
    with pytest.raises(ClipRejected, match="beyond the end of the video"):
        video_face(talking_head, 5.0)


def test_audio_only_file_has_no_face(tmp_path: Path) -> None:
    path = write_m4a(tmp_path / "voice.m4a", tone(1.0, 16000, 300), 16000)
    with pytest.raises(ClipRejected, match="no video stream"):
        video_face(path, 0.5)


def test_unreadable_video_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 20)
    with pytest.raises(ClipRejected, match="not a readable video"):
        video_face(path, 0.5)
