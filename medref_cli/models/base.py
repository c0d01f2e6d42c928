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

from medref_cli.config.schema import ModelConfig
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

    def forward(self, fused: Tensor, pooled_text: Tensor, text_offset: Tensor | None = None) -> tuple[Tensor, Tensor]:
        v = self.image_proj(fused.mean(dim=(2, 3)))
        u = self.text_proj(pooled_text)
        if text_offset is not None:  # the soft position input's share of the text embedding (ISPG)
            u = u + text_offset
        return F.normalize(v, dim=-1), F.normalize(u, dim=-1)


class SoftPositionInput(nn.Module):
    """ISPG's soft position input: six zone probabilities (ZONES order) as one more text token and as
    an offset of the ITCL text embedding, each scaled by a learnt gate sigmoid(g) (g starts at
    `gate_init`, -2.0: the input starts at 12% strength).

    Token: Linear(6, hidden) + GELU + Linear(hidden, text_dim) + LayerNorm, appended after the
    caption's tokens (a real token, never masked as padding), so every fusion or guide layer
    attends to it. Offset: the same shape of MLP to `proj_dim`, added to the text projection
    before normalisation. The structure and initial values are the reference's (hidden 192, gates
    -2.0). The bits mean what the caption's words mean, so left and right follow data.laterality
    as the captions do. A batch without positions reads zeros (no position known)."""

    def __init__(self, text_dim: int, proj_dim: int, hidden: int = 192, gate_init: float = -2.0) -> None:
        super().__init__()
        self.token = nn.Sequential(nn.Linear(6, hidden), nn.GELU(), nn.Linear(hidden, text_dim), nn.LayerNorm(text_dim))
        self.contrast = nn.Sequential(nn.Linear(6, hidden), nn.GELU(), nn.Linear(hidden, proj_dim),
                                      nn.LayerNorm(proj_dim))
        self.token_gate = nn.Parameter(torch.tensor(float(gate_init)))
        self.contrast_gate = nn.Parameter(torch.tensor(float(gate_init)))

    @staticmethod
    def positions_of(text: TextFeatures) -> Tensor:
        if text.positions is None:
            return text.pooled.new_zeros((text.batch_size, 6))
        return text.positions.to(text.pooled.dtype)

    def extend(self, text: TextFeatures) -> TextFeatures:
        """The text with the gated position token appended: tokens (B, L+1, D), mask (B, L+1)."""
        positions = self.positions_of(text)
        token = (torch.sigmoid(self.token_gate) * self.token(positions)).unsqueeze(1).to(text.tokens.dtype)
        mask = torch.cat([text.mask, text.mask.new_ones((text.batch_size, 1))], dim=1)
        return TextFeatures(torch.cat([text.tokens, token], dim=1), mask, text.pooled, text.positions)

    def text_offset(self, text: TextFeatures) -> Tensor:
        return torch.sigmoid(self.contrast_gate) * self.contrast(self.positions_of(text))


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
        # ISPG's soft position input (model.soft_position); None: the model reads captions only
        self.soft_position: SoftPositionInput | None = None

    def add_soft_position(self, hidden: int = 192, gate_init: float = -2.0) -> None:
        """Give the model a soft position input (built last, so the other weights draw the same
        random numbers as a model without one)."""
        proj_dim = self.itcl.text_proj[-1].out_features
        self.soft_position = SoftPositionInput(self.text_dim, proj_dim, hidden, gate_init)

    @property
    def takes_positions(self) -> bool:
        return self.soft_position is not None

    def position_text(self, text: TextFeatures) -> TextFeatures:
        """The text the fusion layers read: with the position token appended when the model has a
        soft position input; as it is otherwise (positions given to such a model are an error)."""
        if self.soft_position is None:
            if text.positions is not None:
                raise ValueError("this model has no soft position input (model.soft_position=false)")
            return text
        return self.soft_position.extend(text)

    @property
    def visual_encoder_name(self) -> str:
        return self.encoder.name

    def embed(self, fused: Tensor, text: TextFeatures) -> tuple[Tensor, Tensor]:
        """(v, u): l2-normalised image and text embeddings for the contrastive losses."""
        if self.soft_position is None:
            return self.itcl(fused, text.pooled)
        return self.itcl(fused, text.pooled, self.soft_position.text_offset(text))

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


def with_soft_position(model: SegmentationModel, cfg: ModelConfig) -> SegmentationModel:
    """`model` with ISPG's soft position input when model.soft_position is on."""
    if cfg.soft_position:
        model.add_soft_position(cfg.soft_position_hidden, cfg.soft_position_gate_init)
    return model


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
