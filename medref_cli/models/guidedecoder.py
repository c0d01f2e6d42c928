"""GuideDecoder (LanGuideMedSeg, MICCAI 2023): a ConvNeXt encoder and a text-guided decoder.

Structure, following the authors' released model:
- ConvNeXt gives four maps (strides 4/8/16/32). Three guide-decoder blocks go up from stride
  32 to 16 to 8 (7 -> 14 -> 28 for a 224 input).
- each block: the frozen text tokens are projected for this layer (a 1x1 Conv1d over the token
  axis, 24 -> 24/12/9 tokens, GELU, Linear to the visual width, LeakyReLU); the visual tokens
  attend to themselves (1 head) and then to the projected text (4 heads) with sinusoidal
  position codes on queries and keys, the text result scaled by a learnable factor (init
  0.01) before the residual; then a MONAI UnetrUpBlock joins the skip at twice the size.
- subpixel x4 upsampling from stride 4 and a 1-channel logit head.
- ITCL's image input (`ModelOutput.fused`), by model.guidedecoder_itc_image:
  `fused` (default; the paper's v = Proj_I(GAP(F)) of the fused feature map F): the deepest
  text-guided map, the first block's attention output at stride 32, then Linear + LayerNorm;
  `visual` (the reference's): the pure-visual deepest ConvNeXt map, then LayerNorm + Linear (the
  reference puts a Linear on the Hugging Face ConvNeXt pooler, the layer-normalised GAP of that
  map; here the LayerNorm is a fresh one, as timm's features_only encoder has no final norm).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medref_cli.config.schema import ModelConfig
from medref_cli.errors import MedrefError
from medref_cli.models.base import (
    ModelOutput,
    SegmentationModel,
    SubpixelLogitHead,
    sine_positions,
    with_soft_position,
)
from medref_cli.models.encoders import TextFeatures, VisualEncoder, create_visual_encoder
from medref_cli.models.registry import register_model

# tokens each of the three guide layers keeps after its token projection (deepest first)
GUIDE_TEXT_LENGTHS = (24, 12, 9)
# ITCL image input (model.guidedecoder_itc_image) -> the image head of ContrastiveHeads
ITC_IMAGE_HEADS = {"fused": "linear_norm", "visual": "norm_linear"}


class GuideLayer(nn.Module):
    """Visual self-attention, then cross-attention to this layer's projection of the text."""

    def __init__(
        self,
        dim: int,
        text_dim: int,
        text_length: int,
        kept_tokens: int,
        self_heads: int = 1,
        cross_heads: int = 4,
    ) -> None:
        super().__init__()
        self.text_project = nn.Sequential(
            nn.Conv1d(text_length, kept_tokens, kernel_size=1),
            nn.GELU(),
            nn.Linear(text_dim, dim),
            nn.LeakyReLU(),
        )
        self.norm_self_in = nn.LayerNorm(dim)
        self.norm_self_out = nn.LayerNorm(dim)
        self.norm_cross_in = nn.LayerNorm(dim)
        self.norm_cross_out = nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, self_heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, cross_heads, batch_first=True)
        self.scale = nn.Parameter(torch.tensor(0.01))  # learnable weight of the text residual

    def forward(self, visual: Tensor, text_tokens: Tensor) -> Tensor:
        """visual (B, N, C) tokens, text_tokens (B, L, D) -> (B, N, C)."""
        text = self.text_project(text_tokens)  # (B, kept, C)
        visual_pos = sine_positions(visual.shape[1], visual.shape[2], visual.device, visual.dtype)
        text_pos = sine_positions(text.shape[1], text.shape[2], text.device, text.dtype)

        x = self.norm_self_in(visual)
        attended = self.self_attn(x + visual_pos, x + visual_pos, x, need_weights=False)[0]
        visual = visual + self.norm_self_out(attended)

        x = self.norm_cross_in(visual)
        attended = self.cross_attn(x + visual_pos, text + text_pos, text, need_weights=False)[0]
        return visual + self.scale * self.norm_cross_out(attended)


class GuideBlock(nn.Module):
    """A guide layer, then up x2 joining the skip (MONAI UnetrUpBlock, BatchNorm)."""

    def __init__(
        self, in_channels: int, out_channels: int, text_dim: int, text_length: int, kept_tokens: int
    ) -> None:
        super().__init__()
        from monai.networks.blocks import UnetrUpBlock

        self.guide = GuideLayer(in_channels, text_dim, text_length, kept_tokens)
        self.up = UnetrUpBlock(
            2, in_channels, out_channels, kernel_size=3, upsample_kernel_size=2, norm_name="BATCH"
        )

    def forward(self, visual: Tensor, skip: Tensor, text_tokens: Tensor) -> tuple[Tensor, Tensor]:
        """(guided map at the input size, upsampled map at the skip size)."""
        batch, channels, height, width = visual.shape
        guided = self.guide(visual.flatten(2).transpose(1, 2), text_tokens)
        guided = guided.transpose(1, 2).reshape(batch, channels, height, width)
        return guided, self.up(guided, skip)


class GuideDecoder(SegmentationModel):
    def __init__(
        self,
        encoder: VisualEncoder,
        text_dim: int,
        text_length: int,
        proj_dim: int,
        head_channels: int = 24,
        itc_image: str = "fused",
    ) -> None:
        if itc_image not in ITC_IMAGE_HEADS:
            raise MedrefError(
                f"model.guidedecoder_itc_image must be one of {', '.join(ITC_IMAGE_HEADS)}, got '{itc_image}'"
            )
        channels = encoder.channels
        super().__init__(encoder, channels[3], text_dim, proj_dim, image_head=ITC_IMAGE_HEADS[itc_image])
        self.itc_image = itc_image
        self.text_length = text_length
        self.blocks = nn.ModuleList(
            GuideBlock(channels[3 - i], channels[2 - i], text_dim, text_length, GUIDE_TEXT_LENGTHS[i])
            for i in range(3)
        )
        self.head = SubpixelLogitHead(channels[0], head_channels, scale=encoder.reductions[0])

    def forward(self, images: Tensor, text: TextFeatures) -> ModelOutput:
        self.check_inputs(images, text)
        text = self.position_text(text)
        if text.tokens.shape[1] != self.text_length:
            raise ValueError(
                f"GuideDecoder was built for {self.text_length} text tokens, got {text.tokens.shape[1]}"
            )
        maps = self.encoder(images)
        x, deepest = maps[3], None
        for block, skip in zip(self.blocks, (maps[2], maps[1], maps[0])):
            guided, x = block(x, skip, text.tokens)
            deepest = guided if deepest is None else deepest
        assert deepest is not None
        itc_input = maps[3] if self.itc_image == "visual" else deepest
        return ModelOutput(logits=self.head(x), fused=itc_input)


@register_model("guidedecoder")
def guidedecoder(cfg: ModelConfig, text_dim: int) -> GuideDecoder:
    """GuideDecoder: ConvNeXt (model.visual_encoder) with 3 text-guided decoder layers."""
    encoder = create_visual_encoder(cfg.visual_encoder, cfg.visual_pretrained, cfg.visual_checkpoint)
    model = GuideDecoder(
        encoder, text_dim, guided_text_length(cfg), cfg.proj_dim, itc_image=cfg.guidedecoder_itc_image
    )
    return with_soft_position(model, cfg)


@register_model("guidedecoder-tiny")
def guidedecoder_tiny(cfg: ModelConfig, text_dim: int) -> GuideDecoder:
    """GuideDecoder on convnext_atto with a narrow head (tests, CPU demos)."""
    encoder = create_visual_encoder("convnext_atto", cfg.visual_pretrained, cfg.visual_checkpoint)
    model = GuideDecoder(
        encoder,
        text_dim,
        guided_text_length(cfg),
        cfg.proj_dim,
        head_channels=8,
        itc_image=cfg.guidedecoder_itc_image,
    )
    return with_soft_position(model, cfg)


def guided_text_length(cfg: ModelConfig) -> int:
    """Tokens the guide layers read: the caption's, and the soft position token (ISPG) when on."""
    return cfg.text_max_length + int(cfg.soft_position)
