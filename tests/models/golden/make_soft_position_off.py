"""Makes soft_position_off.pt (run with the code before the soft position input on the path, OMP_NUM_THREADS=1):
logits, fused map and ITCL embeddings of seeded tiny models, and their state-dict keys."""
import sys

import torch

from medref_cli.config.schema import ModelConfig
from medref_cli.models.encoders import TINY_RANDOM_BERT, load_text_encoder
from medref_cli.models.registry import create_model

CAPTIONS = ["bilateral pulmonary infection, two infected areas, lower left lung and lower right lung.",
            "unilateral pulmonary infection, one infected area, upper middle left lung."]
text_encoder = load_text_encoder(TINY_RANDOM_BERT, max_length=24)
text = text_encoder.encode(CAPTIONS)
out = {}
for backbone in ("mmi-unet-tiny", "guidedecoder-tiny"):
    torch.manual_seed(0)
    model = create_model(ModelConfig(backbone=backbone, visual_pretrained=False, text_encoder=TINY_RANDOM_BERT,
                                     proj_dim=16), text_encoder.dim).eval()
    images = torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        o = model(images, text)
        v, u = model.embed(o.fused, text)
    out[backbone] = {"logits": o.logits, "fused": o.fused, "v": v, "u": u,
                     "params": sorted(model.state_dict())}
torch.save({"text_tokens": text.tokens, **out}, sys.argv[1])
