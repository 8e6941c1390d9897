"""Decoding details: reference sampling, the JPEG draft path, modes, EXIF orientation."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps, JpegImagePlugin

from takedown.media import hash_image_bytes
from takedown.media.decode import decode_for_pdq, decode_reference, sample_indices
from takedown.media.pdq import pdq_from_pixels
from takedown.signals import pdq_distance
from tests.media.standins import encode, load_rgb, resized, stand_in


def coordinate_image(width: int, height: int) -> np.ndarray:
    """Synthetic image whose every pixel spells out its own (x, y)."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x & 255, y & 255, (x >> 8) | ((y >> 8) << 4)], axis=2).astype(np.uint8)


def read_coordinates(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = pixels.astype(np.int64)
    return p[..., 0] | ((p[..., 2] & 15) << 8), p[..., 1] | ((p[..., 2] >> 4) << 8)


@pytest.mark.parametrize("size", [(700, 600), (1300, 300), (300, 900), (513, 512)])
def test_large_images_are_sampled_like_cimg_nearest(size: tuple[int, int]) -> None:
    """Output (x, y) comes from source (floor(x*W/512), floor(y*H/512)), aspect not kept."""
    width, height = size
    pixels = decode_reference(encode(coordinate_image(width, height), "PNG"))
    assert pixels.shape == (512, 512, 3)
    xs, ys = read_coordinates(pixels)
    expected_x = [x * width // 512 for x in range(512)]
    expected_y = [y * height // 512 for y in range(512)]
    assert (xs == np.array(expected_x)[np.newaxis, :]).all()
    assert (ys == np.array(expected_y)[:, np.newaxis]).all()


def test_pillow_nearest_is_not_the_reference() -> None:
    """Why the sampling is done with numpy: Pillow samples pixel centres."""
    source = coordinate_image(700, 600)
    pillow = np.asarray(Image.fromarray(source).resize((512, 512), Image.Resampling.NEAREST))
    assert not np.array_equal(pillow, decode_reference(encode(source, "PNG")))


def test_small_images_keep_their_size() -> None:
    source = coordinate_image(500, 300)
    decoded = decode_for_pdq(encode(source, "PNG"))
    np.testing.assert_array_equal(decoded.pixels, source)
    assert (decoded.width, decoded.height, decoded.format) == (500, 300, "PNG")


def test_decoded_pixels_are_what_pdq_expects() -> None:
    decoded = decode_for_pdq(encode(coordinate_image(900, 700), "PNG"))
    pixels = decoded.pixels
    assert pixels.dtype == np.uint8 and pixels.shape == (512, 512, 3)
    assert pixels.flags.c_contiguous and not pixels.flags.writeable
    assert (decoded.width, decoded.height, decoded.mime_type) == (900, 700, "image/png")


def test_large_jpegs_are_decoded_to_luma() -> None:
    """A JPEG's Y channel is PDQ's luma: the chroma is never decoded (docs in decode.py)."""
    decoded = decode_for_pdq(encode(coordinate_image(900, 700), "JPEG"))
    pixels = decoded.pixels
    assert pixels.dtype == np.uint8 and pixels.shape == (512, 512)
    assert pixels.flags.c_contiguous and not pixels.flags.writeable
    assert (decoded.width, decoded.height, decoded.mime_type) == (900, 700, "image/jpeg")


def test_reduced_axis_maps_to_the_covering_pixel() -> None:
    full = sample_indices(4032, 4032)
    assert full[:4].tolist() == [0, 7, 15, 23]  # floor(x * 4032 / 512)
    reduced = sample_indices(4032, 1008)  # 1/4 DCT scale
    assert (reduced == full // 4).all()
    assert sample_indices(4031, 1008).max() <= 1007


def test_draft_is_used_only_for_large_jpegs(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, ...]] = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self: JpegImagePlugin.JpegImageFile, mode: str | None, size: object) -> object:
        calls.append((mode, size))
        return original(self, mode, size)  # type: ignore[arg-type]

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    photo = load_rgb(stand_in("chelsea"))
    large = encode(resized(photo, long_side=2200), "JPEG", quality=90)
    decode_reference(large)
    decode_for_pdq(encode(photo, "JPEG"))  # 451 x 300
    assert calls == []
    decode_for_pdq(large)
    assert calls == [("L", (1024, 1024))]


def _hash_of(pixels: np.ndarray) -> str:
    return pdq_from_pixels(np.ascontiguousarray(pixels)).hash


def test_grey_is_hashed_as_equal_channels() -> None:
    grey = np.asarray(Image.open(stand_in("camera")))
    assert grey.ndim == 2
    assert hash_image_bytes(encode(grey, "PNG")).pdq.hash == _hash_of(np.dstack([grey] * 3))


def test_sixteen_bit_grey_keeps_the_high_byte() -> None:
    grey = np.asarray(Image.open(stand_in("camera")))
    wide = Image.frombytes("I;16", grey.shape[::-1], (grey.astype("<u2") * 257).tobytes())
    data = encode(wide, "PNG")
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode.startswith("I;16")
    assert hash_image_bytes(data).pdq.hash == _hash_of(np.dstack([grey] * 3))


def test_alpha_is_dropped_not_composited() -> None:
    """The reference takes luma from the first three channels and ignores alpha."""
    rgb = load_rgb(stand_in("astronaut"))
    alpha = np.random.default_rng(3).integers(0, 256, rgb.shape[:2], dtype=np.uint8)
    rgba = np.dstack([rgb, alpha])
    assert hash_image_bytes(encode(rgba, "PNG")).pdq.hash == _hash_of(rgb)
    grey = rgb[..., 0]
    la = Image.fromarray(np.dstack([grey, alpha]), "LA")
    assert hash_image_bytes(encode(la, "PNG")).pdq.hash == _hash_of(np.dstack([grey] * 3))


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "BMP"])
def test_palette_images(fmt: str) -> None:
    paletted = Image.fromarray(load_rgb(stand_in("coffee"))).quantize(256)
    data = encode(paletted, fmt)
    with Image.open(io.BytesIO(data)) as check:
        as_rgb = encode(np.asarray(check.convert("RGB")), "PNG")
    result = hash_image_bytes(data)
    assert result.format == fmt
    assert result.pdq.hash == _hash_of(decode_reference(as_rgb))  # 600 x 400: resampled


def test_bilevel_image() -> None:
    bilevel = Image.fromarray(load_rgb(stand_in("astronaut"))).convert("1")
    expected = np.asarray(bilevel.convert("RGB"))
    assert hash_image_bytes(encode(bilevel, "PNG")).pdq.hash == _hash_of(expected)


def test_cmyk_jpeg() -> None:
    cmyk = Image.fromarray(load_rgb(stand_in("astronaut"))).convert("CMYK")
    data = encode(cmyk, "JPEG", quality=95)
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == "CMYK"
        expected = np.asarray(check.convert("RGB"))
    result = hash_image_bytes(data)
    assert (result.format, result.mime_type) == ("JPEG", "image/jpeg")
    assert result.pdq.hash == _hash_of(expected)


def test_animated_gif_uses_the_first_frame() -> None:
    first = Image.fromarray(load_rgb(stand_in("astronaut"))).quantize(256)
    second = Image.fromarray(load_rgb(stand_in("coffee"))[:512, :512]).quantize(256)
    buffer = io.BytesIO()
    first.save(buffer, "GIF", save_all=True, append_images=[second])
    animated = hash_image_bytes(buffer.getvalue())
    assert animated.pdq.hash == _hash_of(np.asarray(first.convert("RGB")))


def test_webp_lossless() -> None:
    rgb = load_rgb(stand_in("chelsea"))
    result = hash_image_bytes(encode(rgb, "WEBP", lossless=True))
    assert (result.format, result.mime_type) == ("WEBP", "image/webp")
    assert result.pdq.hash == _hash_of(rgb)


def test_multi_picture_jpeg_is_a_jpeg() -> None:
    rgb = load_rgb(stand_in("astronaut"))
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(
        buffer, "MPO", save_all=True, append_images=[Image.fromarray(rgb[::-1].copy())]
    )
    data = buffer.getvalue()
    result = hash_image_bytes(data)
    assert (result.format, result.mime_type) == ("JPEG", "image/jpeg")
    plain = hash_image_bytes(encode(rgb, "JPEG"))
    assert pdq_distance(result.pdq.hash, plain.pdq.hash) <= 4


def _jpeg_with_orientation(pixels: np.ndarray, orientation: int | None) -> bytes:
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    return encode(pixels, "JPEG", quality=92, exif=exif.tobytes())


def test_exif_orientation_is_ignored() -> None:
    """Shared lists hash stored pixels (the C++ reference never reads EXIF)."""
    pixels = load_rgb(stand_in("chelsea"))  # 451 x 300
    tagged = _jpeg_with_orientation(pixels, 6)  # "rotate 90 clockwise to display"
    with Image.open(io.BytesIO(tagged)) as check:
        assert check.getexif()[0x0112] == 6
    plain = _jpeg_with_orientation(pixels, None)
    ours = hash_image_bytes(tagged)
    assert ours.pdq.hash == hash_image_bytes(plain).pdq.hash
    assert (ours.width, ours.height) == (451, 300)


def test_exif_rotated_copy_still_matches_through_the_dihedral_hashes() -> None:
    pixels = load_rgb(stand_in("chelsea"))
    ours = hash_image_bytes(_jpeg_with_orientation(pixels, 6))
    with Image.open(io.BytesIO(_jpeg_with_orientation(pixels, 6))) as img:
        displayed = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    assert displayed.shape[:2] == (451, 300)  # as a viewer shows it: portrait
    baked = hash_image_bytes(encode(displayed, "JPEG", quality=92)).pdq.hash
    assert pdq_distance(baked, ours.pdq.hash) > 64  # a different hash...
    assert pdq_distance(baked, ours.pdq.variants()["rotate270"]) <= 31  # ...found anyway
