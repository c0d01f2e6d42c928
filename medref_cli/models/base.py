"""What every backbone shares: its output, the ITCL projection heads, the subpixel logit head.

The interface the training loop is written against:

    out = model(images (B,1,H,W), text: TextFeatures) -> ModelOutput(logits (B,1,H,W), fused (B,C,h,w))
    v, u = model.embed(out.fused, text)  # both (B, proj_dim), l2-normalised

The frozen text encoder is not inside the model, so every parameter of a model is trainable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medref_cli.errors import MedrefError
from medref_cli.models.encoders import TextFeatures, VisualEncoder


@dataclass
class ModelOutput:
    logits: Tensor  # (B, 1, H, W), before the sigmoid
    fused: Tensor  # (B, C, h, w): ITCL's image input (the deepest fused visual-text map, or see GuideDecoder)


class ContrastiveHeads(nn.Module):
    """ITCL projections. Text: Linear + LayerNorm + GELU + Linear on the pooled text feature (the
    reference's). Image, on GAP of the model's ITCL image map: Linear + LayerNorm
    (`image_head="linear_norm"`, the MMI-UNet reference's head on its fused map) or LayerNorm +
    Linear (`"norm_linear"`, the GuideDecoder reference's: a Linear on the ConvNeXt pooler output,
    which is the layer-normalised GAP of the deepest map)."""

    def __init__(
        self, visual_dim: int, text_dim: int, proj_dim: int, image_head: str = "linear_norm"
    ) -> None:
        super().__init__()
        if image_head == "linear_norm":
            self.image_proj = nn.Sequential(nn.Linear(visual_dim, proj_dim), nn.LayerNorm(proj_dim))
        elif image_head == "norm_linear":
            self.image_proj = nn.Sequential(nn.LayerNorm(visual_dim), nn.Linear(visual_dim, proj_dim))
        else:
            raise ValueError(f"image_head must be linear_norm or norm_linear, got {image_head!r}")
        self.text_proj = nn.Sequential(
            nn.Linear(text_dim, proj_dim), nn.LayerNorm(proj_dim), nn.GELU(), nn.Linear(proj_dim, proj_dim)
        )

    def forward(self, fused: Tensor, pooled_text: Tensor) -> tuple[Tensor, Tensor]:
        v = self.image_proj(fused.mean(dim=(2, 3)))
        u = self.text_proj(pooled_text)
        return F.normalize(v, dim=-1), F.normalize(u, dim=-1)


class SegmentationModel(nn.Module):
    """Base of the registered backbones: holds the visual encoder and the ITCL heads."""

    def __init__(
        self,
        encoder: VisualEncoder,
        fused_dim: int,
        text_dim: int,
        proj_dim: int,
        image_head: str = "linear_norm",
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.text_dim = text_dim
        self.itcl = ContrastiveHeads(fused_dim, text_dim, proj_dim, image_head)

    @property
    def visual_encoder_name(self) -> str:
        return self.encoder.name

    def embed(self, fused: Tensor, text: TextFeatures) -> tuple[Tensor, Tensor]:
        """(v, u): l2-normalised image and text embeddings for the contrastive losses."""
        return self.itcl(fused, text.pooled)

    def forward(self, images: Tensor, text: TextFeatures) -> ModelOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def check_inputs(self, images: Tensor, text: TextFeatures) -> None:
        """Shapes a user's settings can break (image size, text width, batch sizes)."""
        stride = self.encoder.reductions[-1]
        if images.ndim != 4 or images.shape[1] != 1:
            raise ValueError(f"images must be (B,1,H,W) grayscale, got {tuple(images.shape)}")
        height, width = images.shape[-2:]
        if height % stride or width % stride:
            raise MedrefError(f"image size {height}x{width} must be a multiple of {stride} (data.image_size)")
        if text.tokens.shape[-1] != self.text_dim:
            raise MedrefError(
                f"text features are {text.tokens.shape[-1]}-wide but the model was built for {self.text_dim}"
            )
        if text.batch_size != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {text.batch_size} captions")


def box_blur(x: Tensor, size: int) -> Tensor:
    """MONAI's subpixel `pad_pool` (zero pad (size-1, 0, size-1, 0), then AvgPool2d(size, stride 1))
    as one depthwise convolution with a fixed 1/size^2 kernel: the same numbers up to float
    rounding, and several times faster on a CPU in channels_last."""
    channels = x.shape[1]
    kernel = x.new_full((channels, 1, size, size), 1.0 / (size * size))
    return F.conv2d(F.pad(x, (size - 1, 0, size - 1, 0)), kernel, groups=channels)


class SubpixelLogitHead(nn.Module):
    """x4 subpixel upsampling (MONAI SubpixelUpsample: conv, PixelShuffle, pad + average pool) then a
    1x1 conv to one logit. The pad + pool runs as `box_blur`, in the memory format of the input
    (PixelShuffle returns a contiguous map); the module's parameters are MONAI's."""

    def __init__(self, in_channels: int, mid_channels: int, scale: int = 4) -> None:
        super().__init__()
        from monai.networks.blocks import SubpixelUpsample

        self.scale = scale
        self.upsample = SubpixelUpsample(2, in_channels, mid_channels, scale_factor=scale)
        self.logit = nn.Conv2d(mid_channels, 1, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        from monai.networks.utils import pixelshuffle

        y = pixelshuffle(self.upsample.conv_block(x), 2, self.scale)
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            y = y.contiguous(memory_format=torch.channels_last)
        return self.logit(box_blur(y, self.scale))


def sine_positions(length: int, dim: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(1, length, dim) sinusoidal position codes over a flattened sequence (sin on even, cos on odd)."""
    return _sine_table(length, dim, torch.device(device), dtype)


@lru_cache(maxsize=64)
def _sine_table(length: int, dim: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table.unsqueeze(0).to(device=device, dtype=dtype)


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(all parameters, trainable parameters)."""
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return total, trainable
