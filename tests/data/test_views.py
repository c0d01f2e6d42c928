"""Batched views: seeded, aligned image/mask zoom, image-only strong view, the normalisation."""

from __future__ import annotations

import pytest
import torch

from medref_cli.config.schema import SSLConfig
from medref_cli.data.views import (
    StrongViewSettings,
    configured_weak_view,
    gaussian_blur,
    normalise,
    strong_view,
    to_float,
    to_unit,
    weak_view,
    zoom_grid,
)


def _batch(seed: int = 0, size: int = 24):
    gen = torch.Generator().manual_seed(seed)
    masks = (torch.rand(6, 1, size, size, generator=gen) > 0.7).to(torch.uint8)
    images = torch.randint(0, 256, (6, 1, size, size), generator=gen, dtype=torch.uint8)
    return images, masks


def test_same_seed_same_views_other_seed_other_views():
    images, masks = _batch()

    def views(seed):
        gen = torch.Generator().manual_seed(seed)
        weak = weak_view(to_unit(images), masks, gen)
        return weak, strong_view(weak.images, gen)

    (w1, s1), (w2, s2), (w3, s3) = views(1), views(1), views(2)
    assert (
        torch.equal(w1.zoom, w2.zoom)
        and torch.equal(w1.images, w2.images)
        and torch.equal(w1.masks, w2.masks)
    )
    assert torch.equal(s1, s2)
    assert not torch.equal(w1.zoom, w3.zoom) and not torch.equal(s1, s3)
    assert ((w1.zoom >= 0.95) & (w1.zoom <= 1.2)).all()


def test_zoom_one_is_the_identity():
    images, masks = _batch()
    weak = weak_view(images, masks, torch.Generator().manual_seed(0), zoom_range=(1.0, 1.0))
    assert torch.equal(weak.images, images) and torch.equal(weak.masks, masks)
    assert weak.images.dtype == torch.uint8 and weak.masks.dtype == torch.uint8


def test_zoom_two_magnifies_about_the_centre_worked_example():
    """A 2x2 block at rows/cols 3-4 of an 8x8 mask becomes the 4x4 block at 2-5 at zoom 2:
    output pixel i samples input coordinate (i + 0.5 - 4) / 2 + 4 - 0.5, i.e. 2.75 for i = 2
    (nearest: 3, inside) and 2.25 for i = 1 (nearest: 2, outside)."""
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    mask[..., 3:5, 3:5] = 1
    image = mask * 255
    weak = weak_view(image, mask, torch.Generator().manual_seed(0), zoom_range=(2.0, 2.0), mode="bilinear")
    expected = torch.zeros_like(mask)
    expected[..., 2:6, 2:6] = 1
    assert torch.equal(weak.masks, expected)
    # the bilinear image thresholded at half-height lines up with the nearest mask exactly
    assert torch.equal((weak.images > 127).to(torch.uint8), expected)
    assert weak.images[0, 0, 2, 2].item() == round(0.75 * 0.75 * 255)


def _box_masks(n: int, low: int, high: int) -> torch.Tensor:
    """n 32x32 masks, each one 9x9 box with its top-left corner drawn in [low, high)."""
    gen = torch.Generator().manual_seed(3)
    masks = torch.zeros(n, 1, 32, 32, dtype=torch.uint8)
    for i in range(n):
        top, left = torch.randint(low, high, (2,), generator=gen).tolist()
        masks[i, :, top : top + 9, left : left + 9] = 1
    return masks


def test_random_zoom_keeps_image_and_mask_aligned():
    masks = _box_masks(8, 2, 20)
    images = masks.float()  # the image is the mask: any misalignment shows up
    weak = weak_view(images, masks, torch.Generator().manual_seed(5), zoom_range=(0.95, 1.2))
    agreement = ((weak.images > 0.5).to(torch.uint8) == weak.masks).float().mean().item()
    assert agreement > 0.99
    assert set(weak.masks.unique().tolist()) <= {0, 1}


def test_bicubic_zoom_stays_in_range_and_aligned():
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    mask[..., 3:5, 3:5] = 1
    weak = weak_view(mask * 255, mask, torch.Generator().manual_seed(0), zoom_range=(2.0, 2.0))
    assert weak.images.dtype == torch.uint8
    assert torch.equal((weak.images > 127).to(torch.uint8), weak.masks)
    unit = weak_view(to_unit(mask * 255), None, torch.Generator().manual_seed(0), zoom_range=(2.0, 2.0))
    assert unit.images.min() >= 0 and unit.images.max() <= 1  # bicubic overshoot clipped
    assert not torch.equal(unit.images, to_unit(weak_view(mask * 255, None, torch.Generator().manual_seed(0),
                                                          zoom_range=(2.0, 2.0), mode="bilinear").images))
    with pytest.raises(ValueError, match="zoom mode"):
        weak_view(mask, None, torch.Generator(), mode="nearest")


def test_weak_zoom_is_applied_with_the_configured_probability():
    """Reference RandZoomd(prob=0.10): ~10% of the samples zoomed, the rest untouched."""
    images = torch.rand(4000, 1, 8, 8)
    weak = weak_view(images, None, torch.Generator().manual_seed(11), (0.95, 1.2), prob=0.1)
    zoomed = weak.zoom != 1.0
    # binomial sd = sqrt(4000 * 0.1 * 0.9) = 19; allow 4 sd
    assert abs(int(zoomed.sum()) - 400) <= 76
    assert torch.equal(weak.images[~zoomed], images[~zoomed])
    assert (weak.images[zoomed] != images[zoomed]).flatten(1).any(dim=1).all()
    assert SSLConfig().zoom_prob == 0.1 and SSLConfig().zoom_mode == "bicubic"


def test_shift_moves_content_right_and_down_worked_example():
    """A content shift of (0.25, -0.125) sides on an 8x8 image moves every column 2 pixels right and
    every row 1 pixel up, the border repeated where the image was left behind."""
    image = torch.arange(64, dtype=torch.float32).view(1, 1, 8, 8)
    grid = zoom_grid(torch.ones(1), image.shape, torch.tensor([[0.25, -0.125]]))
    moved = torch.nn.functional.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
    rows = torch.arange(8).add(1).clamp(max=7)  # output row i shows input row i + 1
    cols = torch.arange(8).sub(2).clamp(min=0)  # output column j shows input column j - 2
    assert torch.equal(moved[0, 0], image[0, 0][rows][:, cols])


def test_shift_zero_leaves_the_views_and_the_random_stream_as_they_were():
    images, masks = _batch()
    plain_gen, zero_gen = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    plain = weak_view(to_unit(images), masks, plain_gen)
    zero = weak_view(to_unit(images), masks, zero_gen, shift=0.0)
    assert zero.shift is None and torch.equal(plain.images, zero.images) and torch.equal(plain.masks, zero.masks)
    assert torch.equal(torch.rand(3, generator=plain_gen), torch.rand(3, generator=zero_gen))
    moved = weak_view(to_unit(images), masks, torch.Generator().manual_seed(7), shift=0.08)
    assert torch.equal(moved.zoom, plain.zoom)  # the zoom draws come first, unchanged
    assert not torch.equal(moved.images, plain.images)


def test_random_shift_stays_in_range_only_on_zoomed_samples_and_keeps_masks_aligned():
    masks = _box_masks(64, 6, 16)
    weak = weak_view(masks.float(), masks, torch.Generator().manual_seed(5), (0.95, 1.2), prob=0.5, shift=0.1)
    zoomed = weak.zoom != 1.0
    assert 0 < int(zoomed.sum()) < 64
    assert (weak.shift.abs() <= 0.1).all() and (weak.shift[zoomed].abs() > 0).all()
    assert (weak.shift[~zoomed] == 0).all() and torch.equal(weak.images[~zoomed], masks[~zoomed].float())
    assert weak.shift[zoomed].abs().max() > 0.05  # drawn over the whole range, not a sliver of it
    agreement = ((weak.images > 0.5).to(torch.uint8) == weak.masks).float().mean().item()
    assert agreement > 0.99
    # the lesion's centre of mass moves with the drawn shift on both axes (32 px sides; zoom about the centre)
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    for i in torch.nonzero(zoomed).flatten().tolist():
        for axis, coords in ((0, xs), (1, ys)):
            before = (masks[i, 0].float() * coords).sum() / masks[i, 0].sum()
            after = (weak.masks[i, 0].float() * coords).sum() / weak.masks[i, 0].sum()
            expected = (before + 0.5 - 16) * weak.zoom[i] + 16 - 0.5 + 32 * weak.shift[i, axis]
            assert abs(after - expected) < 1.0, (i, axis)


def test_configured_weak_view_reads_the_ssl_section():
    images, masks = _batch()
    cfg = SSLConfig(zoom_min=1.1, zoom_max=1.1, zoom_prob=1.0, zoom_mode="bilinear", shift=0.05)
    weak = configured_weak_view(images, masks, torch.Generator().manual_seed(2), cfg)
    direct = weak_view(to_unit(images), masks, torch.Generator().manual_seed(2), (1.1, 1.1), 1.0, "bilinear", 0.05)
    assert torch.equal(weak.images, direct.images) and torch.equal(weak.shift, direct.shift)
    assert torch.allclose(weak.zoom, torch.full((6,), 1.1)) and SSLConfig().shift == 0.0


def test_strong_view_touches_images_only_and_changes_them():
    images, _ = _batch()
    x = to_float(images)
    before = x.clone()
    out = strong_view(x, torch.Generator().manual_seed(0))
    assert torch.equal(x, before)  # input not modified in place
    assert out.shape == x.shape and out.dtype == torch.float32 and not torch.equal(out, x)
    off = StrongViewSettings(jitter_prob=0.0, blur_prob=0.0)
    assert torch.allclose(strong_view(x, torch.Generator().manual_seed(0), off), x, atol=1e-6)


def test_strong_view_differs_from_the_weak_view_after_normalisation():
    """The jitter acts on the standardised image and is not standardised away: the student input
    of a jittered sample has another scale than the teacher's (weak) input."""
    images = torch.randint(0, 256, (64, 1, 24, 24), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    weak = to_float(images)  # the teacher's input
    jitter_only = StrongViewSettings(brightness=0.2, contrast=0.2, jitter_prob=1.0, blur_prob=0.0)
    strong = strong_view(weak, torch.Generator().manual_seed(0), jitter_only)
    std = strong.flatten(1).std(dim=1, correction=0)  # = brightness x contrast factor, in [0.8, 1.2]^2
    assert ((std >= 0.64 - 1e-4) & (std <= 1.44 + 1e-4)).all()
    assert (std - 1).abs().mean() > 0.05 and (std - 1).abs().max() > 0.15
    # what per-image standardisation after the jitter gives back: the weak input itself
    assert torch.allclose(normalise(strong), weak, atol=1e-4)


def test_strong_view_clip_reproduces_the_float_clamp_of_colorjitter():
    images, _ = _batch()
    x = to_float(images)
    jitter = StrongViewSettings(jitter_prob=1.0, blur_prob=0.0, clip=True)
    out = strong_view(x, torch.Generator().manual_seed(0), jitter)
    assert out.min() >= 0 and out.max() <= 1
    assert (out == 0).float().mean() > 0.2  # the below-mean half of a standardised image is zeroed
    untouched = StrongViewSettings(jitter_prob=0.0, blur_prob=0.0, clip=True)
    assert torch.allclose(strong_view(x, torch.Generator().manual_seed(0), untouched), x, atol=1e-6)


def test_brightness_only_scales_each_image_by_one_factor():
    images = torch.full((5, 1, 10, 10), 100, dtype=torch.uint8)
    images[:, :, :5] = 40
    x = to_float(images)
    settings = StrongViewSettings(brightness=0.3, contrast=0.0, jitter_prob=1.0, blur_prob=0.0)
    out = strong_view(x, torch.Generator().manual_seed(0), settings)
    ratio = out / x
    per_image = ratio.flatten(1)
    assert torch.allclose(per_image, per_image[:, :1].expand_as(per_image), atol=1e-5)
    assert ((per_image[:, 0] >= 0.7 - 1e-6) & (per_image[:, 0] <= 1.3 + 1e-6)).all()


def test_gaussian_blur_per_sample_sigma():
    delta = torch.zeros(2, 1, 15, 15)
    delta[:, :, 7, 7] = 1.0
    out = gaussian_blur(delta, torch.tensor([0.0, 1.0]), radius=7)
    assert torch.equal(out[0], delta[0])  # sigma 0: untouched
    assert out[1].sum().item() == pytest.approx(1.0, abs=1e-5)  # mass kept
    x = torch.arange(-7, 8, dtype=torch.float32)
    expected_row = torch.exp(-(x**2) / 2)
    expected_row /= expected_row.sum()
    assert torch.allclose(out[1, 0, 7], expected_row * expected_row[7], atol=1e-6)


def test_strong_blur_kernel_is_seven_pixels():
    delta = torch.zeros(1, 1, 15, 15)
    delta[:, :, 7, 7] = 1.0
    blur_only = StrongViewSettings(jitter_prob=0.0, blur_prob=1.0, blur_sigma=(2.0, 2.0))
    out = strong_view(delta, torch.Generator().manual_seed(0), blur_only)[0, 0]
    support = (out > 0).nonzero()
    assert support.min().item() == 4 and support.max().item() == 10  # 7 x 7 around (7, 7)


def test_normalisation_matches_monai_normalize_intensity():
    from monai.transforms import NormalizeIntensity

    images, _ = _batch()
    ours = to_float(images)
    reference = torch.stack(
        [torch.as_tensor(NormalizeIntensity(channel_wise=True)(to_unit(images)[i])) for i in range(6)]
    )
    assert torch.allclose(ours, reference, atol=1e-5)
    flat = ours.flatten(1)
    assert torch.allclose(flat.mean(1), torch.zeros(6), atol=1e-5)
    assert torch.allclose(flat.std(1, correction=0), torch.ones(6), atol=1e-4)
    assert torch.equal(normalise(torch.full((1, 1, 4, 4), 0.3)), torch.zeros(1, 1, 4, 4))
