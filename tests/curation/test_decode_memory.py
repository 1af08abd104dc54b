"""Bounded memory per image: hostile images curate in bounded peak RSS, each kept or dropped with its reason,
and ordinary images are measured and hashed as before."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from functools import partial
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest
from curation_records import build_table, by_url, encode, image_row, smooth_image
from hostile_images import MEASURE_CHILD, photo
from PIL import Image

from curation.curate import curate
from curation.curate_config import CurateConfig
from curation.images import (
    DECODE_BUDGET_BYTES,
    WORK_SIDE,
    ImageDecodeError,
    compute_phash,
    compute_signature,
    decode_for_checks,
    decode_image,
    orient,
    reduce_in_strips,
)
from curation.scrub import ScrubConfig, scrub_image

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
MIB = 2**20
# Above the budget itself: the working copy (<= 511 px a side), strips being reduced (4 MiB), the file's
# bytes, Python objects and allocator slack.
SLACK = 32 * MIB

# name -> (how the row ends, the most its curate may add to the child's peak RSS). Measured peaks on this
# machine before/after this bound (MiB above baseline) are in README "Bounded memory per image".
HOSTILE = {
    "flat_png_9400": ("too_large", SLACK),  # 280 KB file, 353 MB decoded: over the budget, never decoded
    "jpeg_9000": ("kept", SLACK),  # baseline JPEG, decoded at 1/8 scale (1125x1125)
    "truncated_jpeg_9000": ("truncated", SLACK),  # the same cut at 90%: still read to its end at 1/8 scale
    "truncated_jpeg_claims_9000": ("truncated", SLACK),  # 53 KB whose header claims 9000x9000
    "progressive_jpeg_9000": ("too_large", SLACK),  # libjpeg would buffer 231 MiB of coefficients
    "palette_png_9400": ("kept", 9400 * 9400 + SLACK),  # 1 byte per pixel decoded, reduced in strips
    "gif_150_frames": ("kept", SLACK),  # only the first frame is decoded
    "truncated_png_6000": ("truncated", DECODE_BUDGET_BYTES + SLACK),  # 137 MiB: within the budget
    "truncated_png_9400": ("undecodable", SLACK),  # its chunks end early: verify finds it before decoding
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Path:
    """The hostile images as files, written by a child process (building the 9000x9000 JPEGs holds ~330 MB)."""
    folder = tmp_path_factory.mktemp("hostile")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{HERE}"}
    subprocess.run([sys.executable, str(HERE / "hostile_images.py"), str(folder)], env=env, check=True)
    return folder


def curate_in_child(path: Path) -> tuple[int, int, str]:
    """(baseline, peak) ru_maxrss in bytes of a fresh interpreter curating the image at `path`, and its outcome.

    The child is started by a shell that forks it: a child made by vfork/exec straight from pytest would inherit
    pytest's own peak as its ru_maxrss (Linux carries it across exec), which would hide the peak measured here.
    """
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{HERE}", "NO_ALBUMENTATIONS_UPDATE": "1"}
    command = ["sh", "-c", '"$@"; exit $?', "sh", sys.executable, "-c", MEASURE_CHILD, str(path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True, timeout=300)
    baseline, peak, outcome = result.stdout.split()[-3:]
    return int(baseline) * 1024, int(peak) * 1024, outcome  # ru_maxrss is in KiB on Linux


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_image_curates_in_bounded_memory(hostile, name):
    expected, bound = HOSTILE[name]
    baseline, peak, outcome = curate_in_child(hostile / f"{name}.img")
    assert outcome == expected
    assert peak - baseline <= min(bound, DECODE_BUDGET_BYTES + SLACK), f"{(peak - baseline) / MIB:.0f} MiB"


def test_large_photo_is_kept_and_hashed_like_its_quarter_size_copy():
    big = photo((4000, 3000), seed=5)
    large, quarter = encode(big, "JPEG", quality=90), encode(big.resize((1000, 750)), "JPEG", quality=80)
    other = encode(photo((4000, 3000), seed=6), "JPEG", quality=90)
    rows = [
        image_row(quarter, "http://127.0.0.1/img/quarter.jpg", 0),
        image_row(large, "http://127.0.0.1/img/large.jpg", 1),
        image_row(other, "http://127.0.0.1/img/other.jpg", 2),
    ]
    out = curate(build_table(rows), CurateConfig())
    assert by_url(out.dropped, "drop_reason") == {"http://127.0.0.1/img/quarter.jpg": "near_duplicate"}
    assert by_url(out.kept, "width") == {"http://127.0.0.1/img/large.jpg": 4000, "http://127.0.0.1/img/other.jpg": 4000}
    assert set(by_url(out.kept, "height").values()) == {3000}
    # The 1/8-scale decode, box-reduced to the working size, hashes within a few bits of the full decode
    # (pHash copies differ by 0-4 bits).
    full, reduced = decode_image(large), decode_for_checks(large)
    assert WORK_SIDE <= min(reduced.image.size) < 2 * WORK_SIDE and reduced.size == (4000, 3000)
    assert bin(int(compute_phash(full)) ^ int(compute_phash(reduced.image))).count("1") <= 4
    assert np.abs(compute_signature(full) - compute_signature(reduced.image)).mean() < 0.01


def test_small_images_are_measured_at_full_size():
    # Shorter side under 2 * WORK_SIDE: no reduction, the same pixels, so the same hashes as decode + orient.
    small = (3 * WORK_SIDE, 2 * WORK_SIDE - 1)
    for data in (encode(smooth_image(2, small), "JPEG"), encode(smooth_image(3, small))):
        before, now = orient(decode_image(data)), decode_for_checks(data)
        assert now.image.size == now.size == before.size
        assert compute_phash(now.image) == compute_phash(before)
        assert np.array_equal(compute_signature(now.image), compute_signature(before))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "L"])
def test_reducing_in_strips_equals_reducing_the_whole_image(mode):
    image = photo((1203, 1717), seed=4).convert(mode)
    target = "L" if mode == "L" else "RGB"
    expected = image.convert(target).reduce(5)
    assert np.array_equal(np.asarray(reduce_in_strips(image, 5)), np.asarray(expected))


def test_large_png_is_reduced_and_its_exif_orientation_applied():
    # 1152 = 18 * WORK_SIDE and 1800 = 100 * 18: the reduction's blocks fall alike whether it comes before the turn
    # (measuring) or after it (the reference), so only rounding separates the two hashes.
    image = photo((1800, 1152), seed=8)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    data = encode(image, "PNG", exif=exif)
    measured = decode_for_checks(data)
    assert measured.size == (1152, 1800) and measured.format == "PNG"
    factor = 1152 // WORK_SIDE  # box-reduced by it, then turned
    assert measured.image.size == (1152 // factor, 1800 // factor)
    upright = image.transpose(Image.Transpose.ROTATE_270)
    assert bin(int(compute_phash(upright)) ^ int(compute_phash(measured.image))).count("1") <= 4


def test_truncated_large_jpeg_is_still_found_at_reduced_scale():
    data = encode(photo((4000, 3000), seed=9), "JPEG", quality=90)
    with pytest.raises(ImageDecodeError) as caught:
        decode_for_checks(data[: len(data) // 2])
    assert caught.value.reason == "truncated"


def _cut(data: bytes, keep: float) -> bytes:
    return data[: int(len(data) * keep)]


def _defects() -> dict[str, tuple[bytes, str]]:
    """Damaged files of each format that curate must drop, with the reason it gives (measured: Pillow calls a
    cut PNG stream "Truncated File Read" while verifying, and a cut WebP has no decodable frame at all)."""
    picture = photo((900, 600), seed=13)
    jpeg = encode(picture, "JPEG", quality=90)
    progressive = encode(picture, "JPEG", quality=90, progressive=True)
    png, gif = encode(picture, "PNG"), encode(picture.convert("P"), "GIF")
    webp, lossless = encode(picture, "WEBP", quality=80), encode(picture, "WEBP", lossless=True)
    return {
        "jpeg cut mid-scan": (_cut(jpeg, 0.6), "truncated"),
        "jpeg without its EOI marker": (jpeg[:-2], "truncated"),
        "progressive jpeg cut after its first scans": (_cut(progressive, 0.5), "truncated"),
        "progressive jpeg cut in its last scan": (_cut(progressive, 0.95), "truncated"),
        "png without IEND": (png[:-12], "truncated"),
        "png cut mid-IDAT": (_cut(png, 0.5), "undecodable"),
        "gif cut mid-frame": (_cut(gif, 0.5), "truncated"),
        "webp cut": (_cut(webp, 0.5), "undecodable"),
        "lossless webp cut": (_cut(lossless, 0.8), "undecodable"),
    }


@pytest.mark.parametrize("name", list(_defects()))
def test_damaged_files_of_every_format_are_dropped_though_decoded_at_reduced_scale(name):
    data, reason = _defects()[name]
    with pytest.raises(ImageDecodeError) as caught:
        decode_for_checks(data)
    assert caught.value.reason == reason
    out = curate(build_table([image_row(data, "http://127.0.0.1/img/bad", 0)]), CurateConfig())
    assert out.dropped.column("drop_reason").to_pylist() == [reason]


def test_the_undamaged_originals_of_the_defects_are_kept():
    picture = photo((900, 600), seed=13)
    for fmt, kwargs in (("JPEG", {}), ("JPEG", {"progressive": True}), ("PNG", {}), ("GIF", {}), ("WEBP", {})):
        measured = decode_for_checks(encode(picture.convert("P") if fmt == "GIF" else picture, fmt, **kwargs))
        assert measured.size == (900, 600) and min(measured.image.size) < 600 // 2  # read at a working size


def test_decode_budget_scales_jpegs_and_refuses_other_formats():
    picture = photo((1000, 1000), seed=10)
    jpeg, png = encode(picture, "JPEG"), encode(picture, "PNG")
    assert decode_image(jpeg, max_decode_bytes=4_000_000).size == (1000, 1000)
    assert decode_image(jpeg, max_decode_bytes=1_000_000).size == (500, 500)  # the largest DCT scale that fits
    with pytest.raises(ImageDecodeError, match="too_large: 1000x1000 PNG needs 3 MiB"):
        decode_image(png, max_decode_bytes=1_000_000)
    progressive = encode(picture, "JPEG", progressive=True)
    with pytest.raises(ImageDecodeError, match="too_large"):  # 4:2:0 coefficients: 3 MB, whatever the scale
        decode_image(progressive, max_decode_bytes=2_000_000)
    out = curate(build_table([image_row(png, "http://127.0.0.1/img/p.png", 0)]), CurateConfig(max_decode_bytes=10**6))
    assert out.dropped.column("drop_reason").to_pylist() == ["too_large"]


def test_many_frame_gif_decodes_only_its_first_frame():
    frames = [Image.new("L", (300, 300), 10 * k) for k in range(20)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    measured = decode_for_checks(buffer.getvalue())
    assert measured.format == "GIF" and measured.size == (300, 300)


def test_scrub_decodes_within_the_same_budget():
    picture = photo((1000, 1000), seed=12)
    jpeg, png = encode(picture, "JPEG"), encode(picture, "PNG")
    cfg = ScrubConfig(blur_faces=False)
    assert scrub_image(jpeg, cfg).width == 1000
    with patch("curation.scrub.decode_image", partial(decode_image, max_decode_bytes=1_000_000)):
        assert (scrub_image(jpeg, cfg).width, scrub_image(jpeg, cfg).height) == (500, 500)
        with pytest.raises(ImageDecodeError, match="too_large"):
            scrub_image(png, cfg)
