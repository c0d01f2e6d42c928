"""ISPG's image-only position predictor: six zone logits from a visual encoder, no text anywhere.

The predictor holds its own copy of a segmentation model's visual encoder (the four ConvNeXt stages,
never a fusion block or the text encoder, so a caption cannot leak into the prediction) and one of
three heads on the deepest map (the reference's `position_predictor_models.py`):

- ``gap_mlp``: global average pool, LayerNorm, Linear(hidden), GELU, Dropout, Linear(6);
- ``region_pool``: the deepest map cut into the six lung zones (left/right halves x thirds of the
  rows), each pooled, a shared LayerNorm and one small MLP per zone;
- ``six_query``: six learned queries, a pre-norm transformer decoder over the visual tokens (with
  2-D sine-cosine positions), LayerNorm, one linear classifier per query.

Output bit order is the label's (left upper, left middle, left lower, right upper, right middle,
right lower). Which image half a caption's "left" is follows ``data.laterality``: ``image`` = the
image's left half (QaTa-COV19), ``patient`` = the image's right half. The reference's region head
assumes the patient convention by default, the opposite of its own T-PatchMix regions; medref
takes the data set's one convention for both.

`freeze_backbone` / `unfreeze_last_stages` give the reference's schedule: the head alone first,
then the deepest stages too.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medref_cli.errors import MedrefError
from medref_cli.models.encoders import VisualEncoder

HEADS = ("gap_mlp", "region_pool", "six_query")
N_ZONES = 6


class GapMlpHead(nn.Module):
    def __init__(self, dim: int, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.classifier = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden_dim), nn.GELU(),
                                        nn.Dropout(dropout), nn.Linear(hidden_dim, N_ZONES))

    def forward(self, feature: Tensor) -> Tensor:
        return self.classifier(feature.mean(dim=(2, 3)))


def thirds(length: int) -> list[tuple[int, int]]:
    """Three consecutive row (or column) ranges covering `length`, each at least one long."""
    edges = [round(i * length / 3) for i in range(4)]
    return [(edges[i], max(edges[i] + 1, edges[i + 1])) for i in range(3)]


def zone_boxes(height: int, width: int, laterality: str) -> list[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) of the six zones on a height x width map, in label bit order."""
    if laterality not in ("image", "patient"):
        raise MedrefError(f"laterality must be image or patient, got {laterality!r}")
    middle = width // 2
    image_left, image_right = (0, max(1, middle)), (middle, width)
    left, right = (image_left, image_right) if laterality == "image" else (image_right, image_left)
    return [(y0, y1, x0, x1) for x0, x1 in (left, right) for y0, y1 in thirds(height)]


class RegionPoolHead(nn.Module):
    def __init__(self, dim: int, hidden_dim: int, dropout: float, laterality: str) -> None:
        super().__init__()
        zone_boxes(2, 2, laterality)  # checks the name
        self.laterality = laterality
        self.norm = nn.LayerNorm(dim)
        self.classifiers = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, 1))
            for _ in range(N_ZONES)
        )

    def forward(self, feature: Tensor) -> Tensor:
        boxes = zone_boxes(feature.shape[2], feature.shape[3], self.laterality)
        pooled = [feature[:, :, y0:y1, x0:x1].mean(dim=(2, 3)) for y0, y1, x0, x1 in boxes]
        return torch.cat([head(self.norm(v)) for head, v in zip(self.classifiers, pooled, strict=True)], dim=1)


def sincos_2d(height: int, width: int, dim: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(1, height*width, dim) codes: sin and cos of the column, then of the row, dim/4 frequencies each."""
    quarter = dim // 4
    y, x = torch.meshgrid(torch.arange(height, device=device, dtype=torch.float32),
                          torch.arange(width, device=device, dtype=torch.float32), indexing="ij")
    omega = 1.0 / (10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / max(1, quarter)))
    x = x.flatten()[:, None] * omega[None, :]
    y = y.flatten()[:, None] * omega[None, :]
    return torch.cat((x.sin(), x.cos(), y.sin(), y.cos()), dim=1).to(dtype).unsqueeze(0)


class SixQueryHead(nn.Module):
    def __init__(self, dim: int, heads: int, layers: int, dropout: float) -> None:
        super().__init__()
        if dim % 4 or dim % heads:
            raise MedrefError(f"six_query head: the encoder's {dim} channels must divide by 4 and by "
                              f"position.query_heads={heads}")
        self.queries = nn.Parameter(torch.empty(N_ZONES, dim))
        nn.init.trunc_normal_(self.queries, std=0.02)
        layer = nn.TransformerDecoderLayer(d_model=dim, nhead=heads, dim_feedforward=2 * dim, dropout=dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, num_layers=layers)
        self.norm = nn.LayerNorm(dim)
        self.weight = nn.Parameter(torch.empty(N_ZONES, dim))
        self.bias = nn.Parameter(torch.zeros(N_ZONES))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, feature: Tensor) -> Tensor:
        batch, channels, height, width = feature.shape
        memory = feature.flatten(2).transpose(1, 2) + sincos_2d(height, width, channels, feature.device,
                                                                 feature.dtype)
        decoded = self.norm(self.decoder(self.queries.unsqueeze(0).expand(batch, -1, -1), memory))
        return torch.einsum("bqd,qd->bq", decoded, self.weight) + self.bias


class PositionPredictor(nn.Module):
    """`model(images (B,1,H,W) normalised) -> (B, 6)` zone logits."""

    def __init__(self, encoder: VisualEncoder, head: str, hidden_dim: int = 384, dropout: float = 0.2,
                 query_layers: int = 2, query_heads: int = 8, laterality: str = "image") -> None:
        super().__init__()
        dim = encoder.channels[-1]
        self.encoder = encoder
        self.head_name = head
        if head == "gap_mlp":
            self.head = GapMlpHead(dim, hidden_dim, dropout)
        elif head == "region_pool":
            self.head = RegionPoolHead(dim, hidden_dim, dropout, laterality)
        elif head == "six_query":
            self.head = SixQueryHead(dim, query_heads, query_layers, dropout)
        else:
            raise MedrefError(f"unknown position head '{head}'; known: {', '.join(HEADS)}")

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.encoder(images)[-1])

    def freeze_backbone(self) -> None:
        for p in self.encoder.parameters():
            p.requires_grad_(False)

    def unfreeze_last_stages(self, n: int) -> None:
        """Let the deepest `n` of the encoder's stages train (each stage with its downsampling layer)."""
        stages = self.encoder.stages
        for stage in list(stages)[len(stages) - max(0, min(len(stages), n)):]:
            for p in stage.parameters():
                p.requires_grad_(True)


def build_position_predictor(position_cfg, encoder: VisualEncoder, laterality: str) -> PositionPredictor:
    """The predictor `position.*` describes, on `encoder` (taken over, not copied)."""
    p = position_cfg
    return PositionPredictor(encoder, p.head, p.hidden_dim, p.dropout, p.query_layers, p.query_heads, laterality)


def encoder_state(model_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The visual encoder's tensors of a segmentation checkpoint's model state, prefix stripped."""
    return {k[len("encoder."):]: v for k, v in model_state.items() if k.startswith("encoder.")}

