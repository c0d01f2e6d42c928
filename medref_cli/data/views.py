"""Batched image views on (B, C, H, W) tensors, on any device, seeded by a `torch.Generator`.

Pipeline of a training step on cached uint8 tensors:
    unit = to_unit(images)                       # float32 in [0, 1]
    weak = weak_view(unit, masks, generator)     # random zoom (and shift), image and mask alike
    x_weak = normalise(weak.images)              # per-image zero mean, unit std (teacher input)
    x_strong = strong_view(x_weak, generator)    # brightness/contrast jitter + Gaussian blur (student input)

Normalisation: each image is divided by 255, then standardised over its own pixels,
(x - mean) / std with the population std (a std of 0 counts as 1). This is what the public
MMI-UNet code feeds its model (MONAI `NormalizeIntensityd(channel_wise=True)`).

The strong view works on the standardised image and is fed to the model as it is (not
standardised again), as the reference applies its ColorJitter and GaussianBlur after
`NormalizeIntensityd`: a brightness or contrast factor then survives as a change of the image's
scale. Jittering in [0, 1] and standardising afterwards would undo every linear jitter.

All random numbers come from the generator passed in and are drawn on the generator's device,
then moved to the images' device: the same seed gives the same views on CPU and GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# reference RandomZoom range (min_zoom 0.95, max_zoom 1.2)
ZOOM_RANGE = (0.95, 1.2)


ZOOM_MODES = ("bicubic", "bilinear")


@dataclass(frozen=True)
class StrongViewSettings:
    """The reference's strong view: ColorJitter(brightness=0.2, contrast=0.2) with p 0.8, then
    GaussianBlur(kernel 7, sigma 0.1-2.0) with p 0.5."""

    brightness: float = 0.2  # factor drawn from [1 - b, 1 + b]
    contrast: float = 0.2  # factor drawn from [1 - c, 1 + c]
    jitter_prob: float = 0.8  # chance that a sample gets the brightness/contrast jitter
    blur_prob: float = 0.5  # chance that a sample gets blurred
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # sigma in pixels, drawn uniformly
    blur_kernel: int = 7  # kernel side in pixels (odd)
    # clip to [0, 1] after each jitter, as torchvision does for any float image (on a standardised
    # image this zeroes every below-mean pixel: the reference's behaviour, kept as a setting)
    clip: bool = False


@dataclass(frozen=True)
class WeakView:
    images: torch.Tensor
    masks: torch.Tensor | None
    zoom: torch.Tensor  # (B,) zoom factor per sample; > 1 magnifies, 1 = untouched
    shift: torch.Tensor | None = None  # (B, 2) content shift (x, y) in shares of the side; None = no shift drawn


def _uniform(
    generator: torch.Generator, n: int, low: float, high: float, device: torch.device
) -> torch.Tensor:
    draws = torch.rand(n, generator=generator, device=generator.device)
    return (low + (high - low) * draws).to(device)


def _bernoulli(generator: torch.Generator, n: int, prob: float, device: torch.device) -> torch.Tensor:
    return (torch.rand(n, generator=generator, device=generator.device) < prob).to(device)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1]; floating images pass through (as float32)."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float()


def normalise(images: torch.Tensor) -> torch.Tensor:
    """Per-image standardisation over (C, H, W): (x - mean) / std, std of 0 -> 1."""
    x = images.float()
    std, mean = torch.std_mean(x.flatten(1), dim=1, correction=0)
    std = torch.where(std == 0, torch.ones_like(std), std)
    shape = (-1,) + (1,) * (images.dim() - 1)
    return (x - mean.view(shape)) / std.view(shape)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """Cached uint8 images -> the model's float input (see the module note for the normalisation)."""
    return normalise(to_unit(images))


def zoom_grid(zoom: torch.Tensor, size: torch.Size, shift: torch.Tensor | None = None) -> torch.Tensor:
    """Sampling grid that magnifies each sample about its centre by `zoom` (B,), then moves its
    content by `shift` (B, 2): (x, y) in shares of the image side, positive = right / down."""
    theta = torch.zeros(size[0], 2, 3, device=zoom.device, dtype=torch.float32)
    theta[:, 0, 0] = 1.0 / zoom
    theta[:, 1, 1] = 1.0 / zoom
    if shift is not None:
        # grid coordinates span [-1, 1] over a side, so a content shift of s sides samples 2 s earlier
        theta[:, :, 2] = -2.0 * shift.to(theta.device, torch.float32)
    return F.affine_grid(theta, list(size), align_corners=False)


def _resample(tensor: torch.Tensor, grid: torch.Tensor, mode: str) -> torch.Tensor:
    out = F.grid_sample(tensor.float(), grid, mode=mode, padding_mode="border", align_corners=False)
    if tensor.dtype == torch.uint8:
        return out.round_().clamp_(0, 255).to(torch.uint8)
    return out.to(tensor.dtype)


def weak_view(
    images: torch.Tensor,
    masks: torch.Tensor | None,
    generator: torch.Generator,
    zoom_range: tuple[float, float] = ZOOM_RANGE,
    prob: float = 1.0,
    mode: str = "bicubic",
    shift: float = 0.0,
) -> WeakView:
    """Random zoom per sample, the same for image and mask (`mode` for images, nearest for masks).

    Like the reference RandZoomd (keep size): a factor in `zoom_range` per sample, applied
    with probability `prob` (reference 0.10), border pixels repeated where the zoom-out leaves a
    margin. Float images stay in [0, 1] (bicubic can overshoot).

    `shift` > 0 (not in the reference, which has none: 0) also moves each zoomed sample's content by
    up to that share of the side along each axis, drawn uniformly per axis after the zoom draws (so
    `shift` 0 leaves the random stream, and every view, as they were). Left and right are kept.
    """
    if mode not in ZOOM_MODES:
        raise ValueError(f"zoom mode must be one of {', '.join(ZOOM_MODES)}, got {mode!r}")
    batch, device = images.shape[0], images.device
    zoom = _uniform(generator, batch, zoom_range[0], zoom_range[1], device)
    applied = _bernoulli(generator, batch, prob, device)
    zoom = torch.where(applied, zoom, torch.ones_like(zoom))
    moved = None
    if shift > 0:
        moved = _uniform(generator, 2 * batch, -shift, shift, device).view(batch, 2)
        moved = torch.where(applied.unsqueeze(1), moved, torch.zeros_like(moved))
    grid = zoom_grid(zoom, images.shape, moved)
    keep = ~applied.view(-1, *([1] * (images.dim() - 1)))  # samples left exactly as they are
    zoomed_images = _resample(images, grid, mode)
    if mode == "bicubic" and zoomed_images.is_floating_point():
        zoomed_images = zoomed_images.clamp_(0.0, 1.0)
    zoomed_images = torch.where(keep, images.to(zoomed_images.dtype), zoomed_images)
    zoomed_masks = None if masks is None else torch.where(keep, masks, _resample(masks, grid, "nearest"))
    return WeakView(zoomed_images, zoomed_masks, zoom, moved)


def configured_weak_view(
    images: torch.Tensor, masks: torch.Tensor | None, generator: torch.Generator, ssl
) -> WeakView:
    """`weak_view` of uint8 (or unit float) images with the settings of an `ssl` config section
    (zoom_min, zoom_max, zoom_prob, zoom_mode, shift)."""
    return weak_view(to_unit(images), masks, generator, (ssl.zoom_min, ssl.zoom_max), ssl.zoom_prob,
                     ssl.zoom_mode, ssl.shift)


def gaussian_kernels(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, 2r+1) normalised 1-D Gaussian kernels; sigma 0 gives the identity kernel."""
    offsets = torch.arange(-radius, radius + 1, device=sigma.device, dtype=torch.float32)
    safe = sigma.clamp_min(1e-6).unsqueeze(1)
    kernels = torch.exp(-(offsets**2) / (2 * safe**2))
    kernels = kernels / kernels.sum(dim=1, keepdim=True)
    identity = (offsets == 0).float().expand_as(kernels)
    return torch.where((sigma > 0).unsqueeze(1), kernels, identity)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Blur each sample with its own sigma (B,), kernel 2r+1, separably, in one grouped convolution per axis."""
    batch, channels, height, width = images.shape
    kernels = gaussian_kernels(sigma, radius).repeat_interleave(channels, dim=0)  # (B*C, k)
    size = 2 * radius + 1
    mode = "reflect" if radius < min(height, width) else "replicate"
    x = images.reshape(1, batch * channels, height, width)
    x = F.conv2d(
        F.pad(x, (0, 0, radius, radius), mode=mode), kernels.view(-1, 1, size, 1), groups=batch * channels
    )
    x = F.conv2d(
        F.pad(x, (radius, radius, 0, 0), mode=mode), kernels.view(-1, 1, 1, size), groups=batch * channels
    )
    return x.reshape(batch, channels, height, width)


def strong_view(
    images: torch.Tensor, generator: torch.Generator, settings: StrongViewSettings = StrongViewSettings()
) -> torch.Tensor:
    """Brightness then contrast jitter, then Gaussian blur, per sample; images only.

    Input: the standardised weak view (float); output float32, fed to the model as it is.
    Brightness scales the image; contrast blends it with its own mean (torchvision's ColorJitter
    on a grayscale image). With `settings.clip` each jitter clips to [0, 1] as torchvision does.
    """
    x = images.float()
    batch, device = x.shape[0], x.device
    jitter = _bernoulli(generator, batch, settings.jitter_prob, device)
    brightness = _uniform(generator, batch, 1 - settings.brightness, 1 + settings.brightness, device)
    contrast = _uniform(generator, batch, 1 - settings.contrast, 1 + settings.contrast, device)
    blur = _bernoulli(generator, batch, settings.blur_prob, device)
    sigma = _uniform(generator, batch, settings.blur_sigma[0], settings.blur_sigma[1], device)
    shape = (-1,) + (1,) * (x.dim() - 1)
    ones = torch.ones_like(brightness)
    brightness = torch.where(jitter, brightness, ones).view(shape)
    contrast = torch.where(jitter, contrast, ones).view(shape)
    clipped = jitter.view(shape) & settings.clip

    def clip(t: torch.Tensor) -> torch.Tensor:
        return torch.where(clipped, t.clamp(0, 1), t) if settings.clip else t

    x = clip(x * brightness)
    mean = x.flatten(1).mean(dim=1).view(shape)
    x = clip((x - mean) * contrast + mean)
    sigma = torch.where(blur, sigma, torch.zeros_like(sigma))
    return gaussian_blur(x, sigma, settings.blur_kernel // 2)
