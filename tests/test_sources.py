"""Source scanners on tiny real trees: pairing, skips, and paths that stay in the root."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sclmd.config import DataParams, PrepareParams, VoxCelebParams
from sclmd.data.audio import prepare_audio
from sclmd.data.image import face_from_video
from sclmd.data.records import SourceScan
from sclmd.data.sources import BROKEN_LINK, ESCAPES_ROOT, SCANNERS, scan_source
from sclmd.data.sources.avspeech import NOT_DOWNLOADED
from sclmd.errors import SclmdError
from tests.media import (
    RED,
    make_avspeech_tree,
    make_voxceleb1_tree,
    make_voxceleb2_tree,
    make_voxsynth_tree,
    voice_like,
    write_image,
    write_wav,
)


def assert_paths_inside_root(scan: SourceScan) -> None:
    for clip in scan.clips:
        root = Path(clip.root)
        assert root.is_absolute()
        for relative in (clip.audio_path, clip.face_path):
            assert not Path(relative).is_absolute() and ".." not in Path(relative).parts
            assert (root / relative).resolve().is_relative_to(root)
            assert (root / relative).is_file()


def reasons(scan: SourceScan) -> list[str]:
    return [reason for _, reason in scan.skipped]


def test_scanners_cover_every_source() -> None:
    sources = PrepareParams.model_fields["source"].annotation.__args__
    assert set(SCANNERS) == set(sources)


# --- VoxSynth -----------------------------------------------------------------------


def test_voxsynth_pairs_utterances_with_faces_round_robin(tmp_path: Path) -> None:
    make_voxsynth_tree(tmp_path / "data/raw/voxsynth")
    scan = scan_source(PrepareParams(source="voxsynth"), tmp_path)
    assert scan.skipped == []
    assert len(scan.clips) == 9
    assert_paths_inside_root(scan)
    first = scan.clips[:3]
    assert [c.clip_id for c in first] == ["s000_0", "s000_1", "s000_2"]
    assert [c.face_path for c in first] == [
        "faces/s000/00.png",
        "faces/s000/01.png",
        "faces/s000/00.png",
    ]
    assert first[0].audio_path == "wav/s000/00.wav"
    assert (first[0].gender, first[0].age) == ("f", 20.0)
    assert scan.clips[3].gender == "m"
    assert scan.clips[0].root == str((tmp_path / "data/raw/voxsynth").resolve())


def test_voxsynth_missing_root_says_to_run_synth(tmp_path: Path) -> None:
    with pytest.raises(SclmdError, match=r"sclmd stage synth.*dvc repro synth"):
        scan_source(PrepareParams(source="voxsynth"), tmp_path)


def test_voxsynth_missing_speaker_list_names_the_file(tmp_path: Path) -> None:
    root = make_voxsynth_tree(tmp_path / "vs", n_speakers=1)
    (root / "speakers.csv").unlink()
    with pytest.raises(SclmdError, match=r"speakers\.csv"):
        scan_source(PrepareParams(source="voxsynth", voxsynth_dir="vs"), tmp_path)


def test_voxsynth_speaker_without_faces_is_skipped(tmp_path: Path) -> None:
    root = make_voxsynth_tree(tmp_path / "vs", n_speakers=2, faces_per_speaker=1)
    (root / "faces/s001/00.png").unlink()
    scan = scan_source(PrepareParams(source="voxsynth", voxsynth_dir="vs"), tmp_path)
    assert {c.speaker_id for c in scan.clips} == {"s000"}
    assert scan.skipped == [("s001", "no face images in faces/<speaker_id>/")]


def test_voxsynth_respects_max_clips_per_speaker(tmp_path: Path) -> None:
    make_voxsynth_tree(tmp_path / "vs", n_speakers=2)
    params = PrepareParams(source="voxsynth", voxsynth_dir="vs", max_clips_per_speaker=2)
    scan = scan_source(params, tmp_path)
    assert [c.clip_id for c in scan.clips] == ["s000_0", "s000_1", "s001_0", "s001_1"]


def test_voxsynth_symlink_out_of_the_root_is_skipped(tmp_path: Path) -> None:
    root = make_voxsynth_tree(tmp_path / "vs", n_speakers=1)
    outside = write_wav(tmp_path / "elsewhere/secret.wav", voice_like(1.5, 16000), 16000)
    (root / "wav/s000/07.wav").symlink_to(outside)
    (root / "wav/s000/08.wav").symlink_to(root / "wav/s000/00.wav")  # inside: fine
    scan = scan_source(PrepareParams(source="voxsynth", voxsynth_dir="vs"), tmp_path)
    assert scan.skipped == [("wav/s000/07.wav", ESCAPES_ROOT)]
    assert [c.clip_id for c in scan.clips] == ["s000_0", "s000_1", "s000_2", "s000_8"]
    assert scan.clips[-1].audio_path == "wav/s000/00.wav"  # recorded as its real file
    assert_paths_inside_root(scan)


def test_voxsynth_broken_symlink_is_skipped(tmp_path: Path) -> None:
    root = make_voxsynth_tree(tmp_path / "vs", n_speakers=1)
    (root / "faces/s000/05.png").symlink_to(root / "faces/s000/gone.png")
    scan = scan_source(PrepareParams(source="voxsynth", voxsynth_dir="vs"), tmp_path)
    assert scan.skipped == [("faces/s000/05.png", BROKEN_LINK)]
    assert_paths_inside_root(scan)


def test_voxsynth_dotdot_speaker_id_cannot_leave_the_root(tmp_path: Path) -> None:
    root = make_voxsynth_tree(tmp_path / "data/vs", n_speakers=1)
    write_wav(tmp_path / "data/wav/x/00.wav", voice_like(1.5, 16000), 16000)
    write_image(tmp_path / "data/faces/x/00.png", "RGB", (32, 32))
    with (root / "speakers.csv").open("a") as handle:
        handle.write("../x,f,30,100\n")
    scan = scan_source(PrepareParams(source="voxsynth", voxsynth_dir="data/vs"), tmp_path)
    assert {c.speaker_id for c in scan.clips} == {"s000"}
    assert scan.skipped == [("../x", "no wav/<speaker_id>/ folder")]


# --- AVSpeech -----------------------------------------------------------------------


def avspeech_params(tree) -> PrepareParams:
    return PrepareParams(source="avspeech", avspeech=tree)


def test_avspeech_missing_videos_are_counted_not_fatal(tmp_path: Path) -> None:
    tree = make_avspeech_tree(tmp_path, n_videos=4, missing=2, full_videos=1)
    scan = scan_source(avspeech_params(tree), tmp_path)
    assert len(scan.clips) == 2
    assert reasons(scan) == [NOT_DOWNLOADED, NOT_DOWNLOADED]
    assert [item for item, _ in scan.skipped] == [
        "v02-Ab_cDe_0.500000_2.500000",
        "v03-Ab_cDe_0.500000_2.500000",
    ]
    assert_paths_inside_root(scan)
    full, segment = scan.clips
    assert full.audio_path == "v00-Ab_cDe.mp4"
    assert (full.audio_start, full.audio_end, full.face_time) == (0.5, 2.5, 1.5)
    assert segment.audio_path == "v01-Ab_cDe_0.500000_2.500000.mp4"
    assert (segment.audio_start, segment.audio_end, segment.face_time) == (None, None, 1.0)
    for clip in scan.clips:
        assert clip.speaker_id == clip.clip_id.split("_0.5")[0]
        assert clip.face_center == (0.4, 0.5)
        assert clip.face_path == clip.audio_path
        assert (clip.gender, clip.age) == (None, None)


def test_avspeech_clips_decode_end_to_end(tmp_path: Path) -> None:
    tree = make_avspeech_tree(tmp_path, n_videos=2, full_videos=1)
    params = avspeech_params(tree)
    data = DataParams(clip_seconds=2.0)
    for clip in scan_source(params, tmp_path).clips:
        path = Path(clip.root) / clip.audio_path
        audio = prepare_audio(
            path,
            data,
            min_seconds=1.0,
            silence_dbfs=-55,
            start=clip.audio_start,
            end=clip.audio_end,
        )
        assert audio.samples.shape == (data.clip_samples,)
        assert abs(audio.source_seconds - 2.0) < 0.1
        face = face_from_video(
            path,
            clip.face_time,
            32,
            min_px=16,
            center=clip.face_center,
            box=params.avspeech.face_box,
        )
        assert np.all(np.abs(face[16, 16].astype(int) - RED) < 40)


def test_avspeech_malformed_rows_are_skipped_with_their_row_number(tmp_path: Path) -> None:
    tree = make_avspeech_tree(tmp_path, n_videos=1)
    with open(tree.csv, "a") as handle:
        handle.write(
            "only,three,fields\n"
            "v00-Ab_cDe,abc,2.0,0.5,0.5\n"
            "v00-Ab_cDe,3.0,2.0,0.5,0.5\n"
            "v00-Ab_cDe,0.5,1.0,1.5,0.5\n"
            "v00-Ab_cDe,0.500000,2.500000,0.4,0.5\n"
        )
    scan = scan_source(avspeech_params(tree), tmp_path)
    assert len(scan.clips) == 1
    assert reasons(scan) == [
        "row 2: expected 5 fields (ytid,start,end,x,y), found 3",
        "row 3: start, end, x, y must be numbers, got ['abc', '2.0', '0.5', '0.5']",
        "row 4: segment [3, 2] s is not a valid time range",
        "row 5: face centre (1.5, 0.5) is outside 0-1",
        "row 6: repeats row 1",
    ]


def test_skip_tally_counts_every_skip_and_keeps_a_bounded_sample_of_each_kind() -> None:
    from sclmd.data.records import SkipTally

    tally = SkipTally(keep=2)
    for i in range(5):
        tally.append((f"v{i}", NOT_DOWNLOADED))
    tally.append(("x.csv row 7", "row 7: expected 5 fields (ytid,start,end,x,y), found 3"))
    assert tally == [
        ("v0", NOT_DOWNLOADED),
        ("v1", NOT_DOWNLOADED),
        ("x.csv row 7", "row 7: expected 5 fields (ytid,start,end,x,y), found 3"),
    ]
    assert tally.total == 6 and tally.counts == {NOT_DOWNLOADED: 5, "row N": 1}


def test_avspeech_scan_memory_follows_the_downloaded_videos_not_the_csv(tmp_path: Path) -> None:
    """Thousands of missing videos are counted, only a bounded sample is kept (AVSpeech: 2.6M rows)."""
    tree = make_avspeech_tree(tmp_path, n_videos=1)
    with open(tree.csv, "a") as handle:
        handle.writelines(f"gone{i:05d},0.000000,2.000000,0.5,0.5\n" for i in range(3000))
    scan = scan_source(avspeech_params(tree), tmp_path)
    assert [c.speaker_id for c in scan.clips] == ["v00-Ab_cDe"]
    assert scan.skipped.total == 3000 and scan.skipped.counts == {NOT_DOWNLOADED: 3000}
    assert len(scan.skipped) == scan.skipped.keep == 1000
    assert scan.skipped[0] == ("gone00000_0.000000_2.000000", NOT_DOWNLOADED)  # the first ones, in CSV order


def test_avspeech_names_from_the_csv_cannot_leave_the_root(tmp_path: Path) -> None:
    tree = make_avspeech_tree(tmp_path / "av", n_videos=1)
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"not for you")
    (Path(tree.videos_dir) / "link_0.000000_1.000000.mp4").symlink_to(outside)
    with open(tree.csv, "a") as handle:
        handle.write("../../secret,0,1,0.5,0.5\nlink,0,1,0.5,0.5\n")
    scan = scan_source(avspeech_params(tree), tmp_path)
    assert [c.speaker_id for c in scan.clips] == ["v00-Ab_cDe"]
    assert sorted(scan.skipped) == [
        ("../../secret_0.000000_1.000000", NOT_DOWNLOADED),
        ("link_0.000000_1.000000", NOT_DOWNLOADED),
        ("link_0.000000_1.000000.mp4", ESCAPES_ROOT),
    ]


def test_avspeech_missing_csv_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(SclmdError, match=r"avspeech_train\.csv: AVSpeech CSV not found"):
        scan_source(PrepareParams(source="avspeech"), tmp_path)


def test_avspeech_respects_max_clips_per_speaker(tmp_path: Path) -> None:
    tree = make_avspeech_tree(tmp_path, n_videos=1, full_videos=1)
    with open(tree.csv, "a") as handle:
        handle.write("v00-Ab_cDe,1.000000,2.000000,0.4,0.5\n")
    assert len(scan_source(avspeech_params(tree), tmp_path).clips) == 2
    capped = avspeech_params(tree).model_copy(update={"max_clips_per_speaker": 1})
    assert [c.audio_start for c in scan_source(capped, tmp_path).clips] == [0.5]


# --- VoxCeleb -----------------------------------------------------------------------


def test_voxceleb1_pairs_each_speaker_with_their_faces(tmp_path: Path) -> None:
    tree = make_voxceleb1_tree(tmp_path / "vox1", n_speakers=3)
    scan = scan_source(PrepareParams(source="voxceleb1", voxceleb1=tree), tmp_path)
    assert scan.skipped == []
    assert len(scan.clips) == 12
    assert_paths_inside_root(scan)
    assert {c.root for c in scan.clips} == {str((tmp_path / "vox1").resolve())}
    first = scan.clips[:4]
    assert [c.clip_id for c in first] == [
        "id10000_yt0v0_x_00001",
        "id10000_yt0v0_x_00002",
        "id10000_yt0v1_x_00001",
        "id10000_yt0v1_x_00002",
    ]
    assert first[0].audio_path == "wav/id10000/yt0v0_x/00001.wav"
    assert [c.face_path for c in first] == [f"faces/Celebrity_0.Name/000{k}_01.jpg" for k in (1, 2, 1, 2)]
    assert [scan.clips[i].gender for i in (0, 4, 8)] == ["m", "f", "m"]
    assert {c.age for c in scan.clips} == {None}


def test_voxceleb1_faces_by_voxceleb_id_and_skipped_speakers(tmp_path: Path) -> None:
    tree = make_voxceleb1_tree(tmp_path / "vox1", n_speakers=3, videos_per_speaker=1)
    faces = Path(tree.faces_dir)
    (faces / "Celebrity_1.Name").rename(faces / "id10001")  # faces filed by VoxCeleb1 ID
    for image in (faces / "Celebrity_2.Name").iterdir():
        image.unlink()
    write_wav(Path(tree.audio_dir) / "id19999/yt/00001.wav", voice_like(1.5, 16000), 16000)
    scan = scan_source(PrepareParams(source="voxceleb1", voxceleb1=tree), tmp_path)
    assert {c.speaker_id for c in scan.clips} == {"id10000", "id10001"}
    assert scan.clips[-1].face_path == "faces/id10001/0002_01.jpg"
    assert scan.skipped == [
        ("wav/id19999", "speaker not listed in vox1_meta.csv"),
        ("id10002", "no face images in faces/Celebrity_2.Name/ or faces/id10002/"),
    ]


def test_voxceleb1_symlinked_utterance_out_of_the_root_is_skipped(tmp_path: Path) -> None:
    tree = make_voxceleb1_tree(tmp_path / "vox1", n_speakers=1, videos_per_speaker=1)
    outside = write_wav(tmp_path / "outside.wav", voice_like(1.5, 16000), 16000)
    (Path(tree.audio_dir) / "id10000/yt0v0_x/00009.wav").symlink_to(outside)
    (Path(tree.faces_dir) / "Celebrity_0.Name/0009_01.jpg").symlink_to(tmp_path / "outside.jpg")
    scan = scan_source(PrepareParams(source="voxceleb1", voxceleb1=tree), tmp_path)
    assert len(scan.clips) == 2
    assert sorted(scan.skipped) == [
        ("faces/Celebrity_0.Name/0009_01.jpg", ESCAPES_ROOT),
        ("wav/id10000/yt0v0_x/00009.wav", ESCAPES_ROOT),
    ]
    assert_paths_inside_root(scan)


def test_voxceleb1_respects_max_clips_per_speaker(tmp_path: Path) -> None:
    tree = make_voxceleb1_tree(tmp_path / "vox1", n_speakers=2)
    params = PrepareParams(source="voxceleb1", voxceleb1=tree, max_clips_per_speaker=3)
    scan = scan_source(params, tmp_path)
    assert [c.speaker_id for c in scan.clips] == ["id10000"] * 3 + ["id10001"] * 3


def test_voxceleb2_meta_with_trailing_spaces(tmp_path: Path) -> None:
    tree = make_voxceleb2_tree(tmp_path / "vox2", n_speakers=2)
    assert "VoxCeleb2 ID ,VGGFace2 ID ," in Path(tree.meta).read_text()
    scan = scan_source(PrepareParams(source="voxceleb2", voxceleb2=tree), tmp_path)
    assert scan.skipped == []
    assert_paths_inside_root(scan)
    assert [(c.clip_id, c.gender) for c in scan.clips] == [
        ("id00000_yt0v0-y_00001", "m"),
        ("id00000_yt0v0-y_00002", "m"),
        ("id00001_yt1v0-y_00001", "f"),
        ("id00001_yt1v0-y_00002", "f"),
    ]
    assert scan.clips[0].audio_path == "aac/id00000/yt0v0-y/00001.m4a"
    assert scan.clips[0].face_path == "faces/n000000/0001_01.jpg"
    audio = prepare_audio(
        Path(scan.clips[0].root) / scan.clips[0].audio_path,
        DataParams(),
        min_seconds=1.0,
        silence_dbfs=-55,
    )
    assert audio.samples.shape == (DataParams().clip_samples,)
    assert audio.source_rate == 16000


@pytest.mark.parametrize("source", ["voxceleb1", "voxceleb2"])
def test_voxceleb_missing_meta_names_the_file(tmp_path: Path, source: str) -> None:
    with pytest.raises(SclmdError, match=rf"vox{source[-1]}_meta\.csv: {source} meta file not found"):
        scan_source(PrepareParams(source=source), tmp_path)


def test_voxceleb_meta_without_the_id_column_is_fatal(tmp_path: Path) -> None:
    tree = make_voxceleb1_tree(tmp_path / "vox1", n_speakers=1, videos_per_speaker=1)
    Path(tree.meta).write_text("name,sex\nBob,m\n")
    with pytest.raises(SclmdError, match=r"vox1_meta\.csv: not a voxceleb1 meta file: missing column"):
        scan_source(PrepareParams(source="voxceleb1", voxceleb1=tree), tmp_path)


def test_voxceleb_folders_with_no_common_parent_are_fatal(tmp_path: Path) -> None:
    tree = make_voxceleb1_tree(tmp_path / "vox1", n_speakers=1, videos_per_speaker=1)
    apart = VoxCelebParams(meta=tree.meta, audio_dir=tree.audio_dir, faces_dir="/dev")
    with pytest.raises(SclmdError, match="Put both under one data folder"):
        scan_source(PrepareParams(source="voxceleb1", voxceleb1=apart), tmp_path)


def test_voxceleb_missing_audio_dir_is_fatal(tmp_path: Path) -> None:
    tree = make_voxceleb1_tree(tmp_path / "vox1", n_speakers=1, videos_per_speaker=1)
    missing = tree.model_copy(update={"audio_dir": str(tmp_path / "vox1/nowhere")})
    with pytest.raises(SclmdError, match=r"nowhere: voxceleb1 audio directory not found"):
        scan_source(PrepareParams(source="voxceleb1", voxceleb1=missing), tmp_path)
