"""MMI-UNet (MICCAI 2024): text fused into every ConvNeXt stage, then a UNet decoder.

Structure, following the authors' released model:
- the ConvNeXt stem and stages run one by one; after stage i a fusion block reduces the map
  with a stride-2 "zoom-in" conv, lets the visual tokens attend to themselves and then to the
  text tokens (8 heads, FFN), and a transposed conv brings the result back to the stage size,
  added to the stage output (residual). In parallel the text tokens attend to the visual
  tokens and their update is carried to the next stage.
- as in the reference, the next stage reads `fused + stage output`, and the next fusion block
  reads `original tokens + previous block's text output`.
- decoder: three up-blocks (transposed conv x2, concatenate the fused skip, conv-BN-ReLU),
  then subpixel x4 upsampling and a 1-channel logit head.
- `fused` (ITCL's image input) is the output of the deepest fusion block.

Padding tokens: as in the reference, the fusion attention sees all text_max_length token
positions, padding included (model.text_padding_mask=false, the default; the paper is silent);
with model.text_padding_mask=true it ignores the padding positions.

Differences from the reference, none of which changes what the network computes:
the deepest block has no text branch (the reference computes one and discards it); convs
followed by BatchNorm have no bias (BN cancels it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from medref_cli.config.schema import ModelConfig
from medref_cli.models.base import ModelOutput, SegmentationModel, SubpixelLogitHead, with_soft_position
from medref_cli.models.encoders import TextFeatures, VisualEncoder, create_visual_encoder
from medref_cli.models.registry import register_model


class CrossModalLayer(nn.Module):
    """Post-norm transformer layer: self-attention, cross-attention to the other modality, FFN."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim)
        )
        self.norm_self = nn.LayerNorm(dim)
        self.norm_cross = nn.LayerNorm(dim)
        self.norm_ffn = nn.LayerNorm(dim)
        self.drop_self = nn.Dropout(dropout)
        self.drop_cross = nn.Dropout(dropout)
        self.drop_ffn = nn.Dropout(dropout)

    def forward(
        self,
        queries: Tensor,
        memory: Tensor,
        query_padding: Tensor | None = None,
        memory_padding: Tensor | None = None,
    ) -> Tensor:
        attended = self.self_attn(
            queries, queries, queries, key_padding_mask=query_padding, need_weights=False
        )[0]
        x = self.norm_self(queries + self.drop_self(attended))
        attended = self.cross_attn(x, memory, memory, key_padding_mask=memory_padding, need_weights=False)[0]
        x = self.norm_cross(x + self.drop_cross(attended))
        return self.norm_ffn(x + self.drop_ffn(self.ffn(x)))


class FusionBlock(nn.Module):
    """Visual-textual fusion after one encoder stage (the reference's "Bridger")."""

    def __init__(
        self,
        visual_dim: int,
        text_dim: int,
        dim: int,
        heads: int,
        ffn_dim: int,
        dropout: float,
        update_text: bool,
    ) -> None:
        super().__init__()
        self.zoom_in = nn.Conv2d(visual_dim, dim, kernel_size=2, stride=2, bias=False)
        self.zoom_out = nn.ConvTranspose2d(dim, visual_dim, kernel_size=2, stride=2, bias=False)
        self.text_in = nn.Linear(text_dim, dim)
        self.norm_visual = nn.LayerNorm(dim)
        self.norm_text = nn.LayerNorm(dim)
        self.visual_layer = CrossModalLayer(dim, heads, ffn_dim, dropout)
        self.text_layer = CrossModalLayer(dim, heads, ffn_dim, dropout) if update_text else None
        self.text_out = nn.Linear(dim, text_dim) if update_text else None
        self._init_weights()

    def _init_weights(self) -> None:
        """The reference's init: linear N(0, 0.02) with zero bias, convs Kaiming (fan_out)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(
        self, visual: Tensor, text: Tensor, text_padding: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        """visual (B,C,H,W), text (B,L,D) -> (visual + update, text + update or None)."""
        v = self.zoom_in(visual)
        batch, dim, height, width = v.shape
        v = self.norm_visual(v.flatten(2).transpose(1, 2))  # (B, h*w, dim)
        t = self.norm_text(self.text_in(text))  # (B, L, dim)
        new_v = self.visual_layer(v, t, memory_padding=text_padding)
        new_v = new_v.transpose(1, 2).reshape(batch, dim, height, width)
        fused = visual + self.zoom_out(new_v, output_size=list(visual.shape[-2:]))
        if self.text_layer is None or self.text_out is None:
            return fused, None
        new_t = self.text_layer(t, v, query_padding=text_padding)
        return fused, text + self.text_out(new_t)


class UpBlock(nn.Module):
    """Transposed conv x2, concatenate the skip, 3x3 conv + BatchNorm + ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        self.conv = nn.Sequential(
            nn.Conv2d(out_channels + skip_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = self.up(x, output_size=list(skip.shape[-2:]))
        return self.conv(torch.cat([x, skip], dim=1))


class MMIUNet(SegmentationModel):
    def __init__(
        self,
        encoder: VisualEncoder,
        text_dim: int,
        proj_dim: int,
        fusion_dims: Sequence[int] | None = None,
        fusion_heads: int = 8,
        fusion_ffn_dim: int = 128,
        fusion_dropout: float = 0.1,
        decoder_dims: Sequence[int] | None = None,
        head_channels: int = 24,
        text_padding_mask: bool = False,
    ) -> None:
        channels = encoder.channels
        super().__init__(encoder, fused_dim=channels[3], text_dim=text_dim, proj_dim=proj_dim)
        fusion_dims = tuple(fusion_dims or channels)
        decoder_dims = tuple(decoder_dims or channels[:3])
        self.text_padding_mask = text_padding_mask
        self.fusions = nn.ModuleList(
            FusionBlock(
                channels[i],
                text_dim,
                fusion_dims[i],
                fusion_heads,
                fusion_ffn_dim,
                fusion_dropout,
                update_text=i < 3,
            )
            for i in range(4)
        )
        self.up3 = UpBlock(channels[3], channels[2], decoder_dims[2])
        self.up2 = UpBlock(decoder_dims[2], channels[1], decoder_dims[1])
        self.up1 = UpBlock(decoder_dims[1], channels[0], decoder_dims[0])
        self.head = SubpixelLogitHead(decoder_dims[0], head_channels, scale=encoder.reductions[0])

    def forward(self, images: Tensor, text: TextFeatures) -> ModelOutput:
        self.check_inputs(images, text)
        text = self.position_text(text)
        padding = ~text.mask if self.text_padding_mask else None
        carried = text.tokens
        x = images
        skips: list[Tensor] = []
        for stage, fusion in zip(self.encoder.stages, self.fusions):
            x = stage(x)
            fused, text_out = fusion(x, carried, padding)
            skips.append(fused)
            if text_out is not None:
                carried = text.tokens + text_out
            x = fused + x
        y = self.up3(skips[3], skips[2])
        y = self.up2(y, skips[1])
        y = self.up1(y, skips[0])
        return ModelOutput(logits=self.head(y), fused=skips[3])


@register_model("mmi-unet")
def mmi_unet(cfg: ModelConfig, text_dim: int) -> MMIUNet:
    """MMI-UNet: ConvNeXt (model.visual_encoder) with 4 fusion blocks and a UNet decoder."""
    encoder = create_visual_encoder(cfg.visual_encoder, cfg.visual_pretrained, cfg.visual_checkpoint)
    return with_soft_position(MMIUNet(encoder, text_dim, cfg.proj_dim, text_padding_mask=cfg.text_padding_mask), cfg)


@register_model("mmi-unet-tiny")
def mmi_unet_tiny(cfg: ModelConfig, text_dim: int) -> MMIUNet:
    """MMI-UNet on convnext_atto with narrow fusion and decoder (tests, CPU demos)."""
    encoder = create_visual_encoder("convnext_atto", cfg.visual_pretrained, cfg.visual_checkpoint)
    model = MMIUNet(
        encoder,
        text_dim,
        cfg.proj_dim,
        fusion_dims=(16, 32, 64, 64),
        fusion_heads=4,
        fusion_ffn_dim=64,
        decoder_dims=(16, 32, 64),
        head_channels=8,
        text_padding_mask=cfg.text_padding_mask,
    )
    return with_soft_position(model, cfg)
