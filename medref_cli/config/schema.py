"""The experiment configuration: frozen dataclasses, the single source of truth.

Every default here is the paper's setting (or, where the paper is silent, the public
reference implementation's). `experiments/base.yaml` restates them; a test keeps the two equal.
CPU-sized and demo settings live in experiment files that hold only their differences.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DataConfig:
    # synthetic | qata | mosmed | custom (custom needs `root`)
    dataset: str = "synthetic"
    # folder of the data set; empty means the dataset's default location
    root: str = ""
    # auto | qata | lvit | mmiunet | mosmed | mosmed-frames (the reference's frames/ + masks/ layout)
    format: str = "auto"
    # whether "left" in a caption means the image's left or the patient's left
    laterality: str = "image"
    image_size: int = 224
    # decode each split once into a uint8 tensor held in memory (or on the device)
    cache: bool = True
    # size and seed of the built-in synthetic data set (dataset "synthetic")
    synthetic_n: int = 400
    synthetic_seed: int = 0


@dataclass(frozen=True)
class SplitConfig:
    # share of the train split that keeps its labels; 1.0 = fully supervised
    ratio: float = 0.05
    seed: int = 42
    # seeded: medref's nested seeded draw (the paper: "we randomly sample labeled subsets");
    # imported: the manifest `medref split --import` recorded for this data, ratio and seed
    # (the reference's fixed data_splits files)
    source: str = "seeded"


@dataclass(frozen=True)
class ModelConfig:
    # registered model name: mmi-unet | guidedecoder | tiny variants (`medref models`)
    backbone: str = "mmi-unet"
    # timm model name of the visual encoder (features_only, 4 stages); the MMI-UNet reference starts
    # from ImageNet-22k ConvNeXt-Tiny, GuideDecoder from ImageNet-1k (experiments/guidedecoder.yaml)
    visual_encoder: str = "convnext_tiny.fb_in22k"
    visual_pretrained: bool = True
    # local timm checkpoint for the visual encoder (empty: timm's own weights)
    visual_checkpoint: str = ""
    # hub name or local folder of the frozen text encoder; "builtin-minilm" = the packaged MiniLM
    text_encoder: str = "microsoft/BiomedVLP-CXR-BERT-specialized"
    # hub revision (tag, branch or commit) of a hub-named text encoder; "v1.1" is CXR-BERT's release tag
    # (ignored for local folders and the built-in encoders, whose files are hashed instead)
    text_revision: str = "v1.1"
    text_max_length: int = 24
    freeze_text: bool = True
    # width of the ITCL projection heads (the reference's project_dim: 768)
    proj_dim: int = 768
    # MMI-UNet fusion attention ignores padding tokens (true) or attends to all text_max_length
    # positions, padding included (false: the reference; the paper is silent)
    text_padding_mask: bool = False
    # ITCL text feature: mean of layers 1, 2, last over all_positions (padding included: the
    # reference; the paper is silent) or over the real tokens only
    text_pool: str = "all_positions"
    # GuideDecoder ITCL image input: GAP of the fused map (the first guide layer's output; Linear +
    # LayerNorm; the paper's v = Proj_I(GAP(F))) or of the pure-visual deepest ConvNeXt map
    # (visual: LayerNorm + Linear, the reference)
    guidedecoder_itc_image: str = "fused"
    # encode a training student's captions with the frozen text encoder's dropout active, afresh
    # every step (true: the reference's quirk, its student holds the encoder in train mode; it
    # bypasses the text-feature cache for those passes); false: eval mode, cached
    text_dropout: bool = False
    # ISPG (the reference's optional extension, off in its main configs): a soft position input of six
    # zone probabilities, fed as one more gated text token and a gated ITCL text offset
    soft_position: bool = False
    # hidden width of its two MLPs and the initial value g of its gates sigmoid(g) (the reference's)
    soft_position_hidden: int = 192
    soft_position_gate_init: float = -2.0


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 42
    batch_size: int = 32
    # unlabeled batch per step in the SSL phase (0 = same as batch_size)
    unlabeled_batch_size: int = 0
    lr: float = 3e-4
    min_lr: float = 1e-6
    # AdamW weight decay (paper silent; the reference uses torch's default, 0.01)
    weight_decay: float = 0.01
    burnin_epochs: int = 5
    # length of one burn-in epoch: "unlabeled" = as long as the unlabeled pass, ceil(N_u / batch) steps
    # (the reference); "labeled" = one pass over the labeled split
    burnin_epoch: str = "unlabeled"
    # labeled batches in epochs counted by the unlabeled pass: "replacement" = drawn with replacement
    # (the reference's RandomSampler); "cycle" = endless shuffled passes over the labeled split
    labeled_draw: str = "replacement"
    # labeled ITCL during burn-in (the paper's eq. 2 trains burn-in on DiceCE alone; the reference: true)
    burnin_itcl: bool = False
    # "run" = one AdamW and one LR schedule over burn-in and SSL, SSL starting from the last burn-in
    # weights (the reference); "phase" = a fresh AdamW and schedule per phase, SSL from the best burn-in
    optimizer_scope: str = "run"
    # cosine period in epochs (0 = the whole training length, so the lr reaches min_lr at the end, the
    # paper's "cosine annealing to 1e-6"; the reference: CosineAnnealingLR(T_max=200) over 100 epochs)
    lr_period_epochs: int = 0
    # "epoch" = the lr changes at epoch ends (the reference's Lightning default); "step" = every step
    lr_step: str = "epoch"
    # SSL epochs after burn-in (the reference's max_epochs 100 count the 5 burn-in epochs too)
    epochs: int = 95
    # stop when validation Dice has not improved by more than min_delta for this many epochs (0 = never),
    # never before min_epochs epochs (burn-in included when select_over is "run"; the reference: 30, 1e-3, 20)
    patience: int = 30
    min_delta: float = 0.001
    min_epochs: int = 20
    # model selection and early stopping over the whole run, burn-in validations included ("run", the
    # reference), or over the SSL phase only ("phase")
    select_over: str = "run"
    # supervised run of the SAME number of optimizer steps as the semi-supervised run of this config:
    # `medref burnin` trains burnin_epochs + epochs epochs (the control of Tables 1 and 2)
    step_matched: bool = False
    # validate every N epochs
    val_every: int = 1
    # steps per epoch cap (0 = a full pass over the data)
    max_steps_per_epoch: int = 0
    # dice weight and CE weight of the DiceCE loss
    dice_weight: float = 1.0
    ce_weight: float = 1.0
    # ISPG removal-aware training (models with model.soft_position only): the share of training captions
    # whose positional phrases are removed, drawn per caption and step (the reference's
    # position_removal_probability in its ISPG configs: 0.5); the soft input carries their position
    ispg_removal_rate: float = 0.5


@dataclass(frozen=True)
class SSLConfig:
    # how to pick the model kept on validation Dice: teacher | student | best (paper silent; the reference
    # validates, keeps and tests the student)
    select: str = "student"
    ema: bool = True
    # the EMA teacher tracks the student during burn-in too, at ema_momentum_start (the reference)
    ema_in_burnin: bool = True
    # the lambda_u ramp and the EMA warm-up advance once per epoch ("epoch", the reference) or per step
    ramp_every: str = "epoch"
    ema_momentum: float = 0.999
    # momentum rises linearly from ema_momentum_start to ema_momentum over this many epochs
    ema_momentum_start: float = 0.99
    ema_warmup_epochs: int = 20
    # confidence threshold delta of the hard pseudo-mask and of the T-PatchMix lesion gate
    threshold: float = 0.55
    lambda_u: float = 0.3
    # lambda_u ramps linearly from 0 over this many epochs after burn-in (0 = no ramp)
    lambda_u_ramp_epochs: int = 15
    # weak view: random zoom range
    zoom_min: float = 0.95
    zoom_max: float = 1.2
    # chance that a sample is zoomed (paper silent; reference RandZoomd prob 0.10; 1.0 = every sample)
    zoom_prob: float = 0.1
    # zoom interpolation of the image: bicubic (reference) | bilinear
    zoom_mode: str = "bicubic"
    # weak view: with the zoom, move the content by up to this share of the side along each axis
    # (0 = no shift, the reference; a CPU recipe from random weights may raise it)
    shift: float = 0.0
    # strong image view (ImgStrong): ColorJitter + GaussianBlur on the standardised model input
    img_strong: bool = True
    # clip the jittered standardised image to [0, 1] (the reference's torchvision float clamp)
    strong_clip: bool = False
    # TextStrong: synonym replacement + random deletion
    text_strong: bool = False
    posaug: bool = True
    posaug_rho: float = 0.5
    # chance that each positional phrase is edited (reference pos_aug_p 0.5; 1.0 = every phrase)
    posaug_edit_prob: float = 0.5
    posaug_phrase: str = "a region of the lung"
    # none | tpatchmix | cutmix | spc
    mix: str = "tpatchmix"
    # position | probability
    tpatchmix_mode: str = "position"
    tpatchmix_block: int = 16
    # chance that a block inside the admissible region is drawn
    tpatchmix_block_prob: float = 0.08
    # lesion gate r >= delta over the whole drawn mask ("sample", paper eq. 7) or per block ("block")
    tpatchmix_gate: str = "sample"
    # single: one block per sample (drawn with tpatchmix_block_prob) inside the first phrase's region or
    # centred on a confident partner pixel | grid: each grid block of the region drawn on its own
    tpatchmix_draw: str = "single"
    # laterality conflict: first_phrase (the first phrases name opposite sides) | sides (one label
    # names only left zones, the other only right zones)
    tpatchmix_conflict: str = "first_phrase"
    # paste the drawn patch into the student image before the lesion gate (reference quirk)
    tpatchmix_paste_before_gate: bool = False
    # student text in probability mode: span_mix (as in position mode) | unchanged (reference)
    tpatchmix_probability_text: str = "span_mix"
    # none | itcl | clip
    contrastive: str = "itcl"
    itcl_tau: float = 0.07
    # ITCL affinity of two different samples whose position labels are both empty: 0 (false: the
    # reference; the paper's Jaccard is undefined there) or 1 (true: both name no zone)
    itcl_empty_match: bool = False
    lambda_itcl_sup: float = 0.02
    lambda_itcl_unsup: float = 0.1
    # scale the unlabeled ITC weight by the current unsupervised weight (reference: 0.1 x w_unsup)
    itcl_unsup_follows_lambda_u: bool = True
    # unlabeled ITC input: weak (weak image + original caption, a third student pass; reference) |
    # strong (the student's strong/mixed image and text, union labels)
    itc_unsup_view: str = "weak"
    # student passes: separate (labeled; strong; weak: BatchNorm per batch, reference) | joint (one pass)
    student_passes: str = "separate"


@dataclass(frozen=True)
class EvalConfig:
    threshold: float = 0.5
    split: str = "test"


@dataclass(frozen=True)
class PositionConfig:
    """ISPG's image-only position predictor (`medref position train|eval`): a head on a copy of a recorded
    run's visual encoder predicts the 6-bit position label from the image alone. Defaults: the reference's
    `train_position_predictor.py` and its ISPG configs (`configs/*_ispg.yaml`)."""

    # gap_mlp (the ISPG configs' position_head) | region_pool (six fixed lung zones pooled, one MLP each) |
    # six_query (six learned queries cross-attend to the visual tokens)
    head: str = "gap_mlp"
    hidden_dim: int = 384
    dropout: float = 0.2
    query_layers: int = 2
    query_heads: int = 8
    # which weights of the parent checkpoint give the visual encoder: student | teacher (a train run keeps
    # both; a burn-in keeps the student)
    weights: str = "student"
    # train on the labeled split (the reference's default train annotations: the labeled split file) or on
    # the whole train split (train: the 6-bit labels come from the captions, which unlabeled images have too)
    train_split: str = "labeled"
    epochs: int = 30
    batch_size: int = 32
    lr_head: float = 3e-4
    lr_backbone: float = 3e-5
    weight_decay: float = 1e-4
    # the visual encoder is frozen for the first freeze_epochs epochs, then its last unfreeze_stages stages
    # (of 4) train at lr_backbone
    freeze_epochs: int = 5
    unfreeze_stages: int = 2
    # decision threshold of macro-F1 and exact match
    threshold: float = 0.5
    # loss = bce_mix x BCE + (1 - bce_mix) x asymmetric focal + cardinality_weight x cardinality
    bce_mix: float = 0.5
    gamma_negative: float = 2.0
    gamma_positive: float = 0.0
    cardinality_weight: float = 0.1
    # BCE positive weights negatives / positives per zone on the training labels, clamped to [0.25, 4]
    pos_weight: bool = True


@dataclass(frozen=True)
class RuntimeConfig:
    """How a run is executed, not what it computes: excluded from the config hash (but `amp`)."""

    # cpu | cuda:N | auto
    device: str = "auto"
    results_dir: str = "results"
    # bf16 autocast on CUDA (the reference and the paper: fp32). It changes the numbers, so it is part of
    # the config hash (HASHED_RUNTIME_KEYS): fp32 and bf16 runs are different experiments
    amp: bool = False
    channels_last: bool = True
    compile: bool = False
    log_every: int = 10
    # write the resume checkpoint results/runs/<id>/last.pt every N training steps (0 = only at the
    # end of every epoch, where it is always written); `medref train|burnin --resume ID` continues from it
    checkpoint_every: int = 200
    progress: bool = True
    heartbeat_s: float = 30.0
    # where `medref ablate` runs its cells: local (processes on this machine) | slurm (one Slurm job per
    # cell through submitit, `slurm.*` settings) | submitit-local (the same submission path run by
    # submitit's local executor on this machine, for trying a grid without a cluster)
    executor: str = "local"


@dataclass(frozen=True)
class SlurmConfig:
    """Resources of each cell's Slurm job (`medref ablate --executor slurm`): not hashed, they do not
    change what a cell computes. Empty / 0 leaves a setting to the cluster's defaults."""

    partition: str = ""
    account: str = ""
    gpus_per_job: int = 0
    cpus_per_job: int = 0
    # wall-clock limit: minutes, or Slurm's [D-]HH:MM[:SS]
    time: str = "24:00:00"
    # memory per job as Slurm reads it: 16G, 16000M (empty: the partition's default)
    mem: str = ""
    # further sbatch options, KEY=VALUE separated by ';' (e.g. "qos=high;constraint=a100")
    extra: str = ""


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = "base"
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    ssl: SSLConfig = field(default_factory=SSLConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    position: PositionConfig = field(default_factory=PositionConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)


# sections whose values do not change what a run computes
UNHASHED_SECTIONS = ("runtime", "slurm")
# keys of those sections that do change the numbers, and so are hashed
HASHED_RUNTIME_KEYS = ("amp",)
# keys that name the experiment rather than define it
UNHASHED_KEYS = ("name",)

CHOICES: dict[str, tuple[str, ...]] = {
    "data.dataset": ("synthetic", "qata", "mosmed", "custom"),
    "data.format": ("auto", "qata", "lvit", "mmiunet", "mosmed", "mosmed-frames"),
    "split.source": ("seeded", "imported"),
    "data.laterality": ("image", "patient"),
    "model.text_pool": ("all_positions", "tokens"),
    "model.guidedecoder_itc_image": ("fused", "visual"),
    "ssl.mix": ("none", "tpatchmix", "cutmix", "spc"),
    "ssl.tpatchmix_mode": ("position", "probability"),
    "ssl.tpatchmix_gate": ("sample", "block"),
    "ssl.tpatchmix_draw": ("single", "grid"),
    "ssl.tpatchmix_conflict": ("first_phrase", "sides"),
    "ssl.tpatchmix_probability_text": ("span_mix", "unchanged"),
    "ssl.zoom_mode": ("bicubic", "bilinear"),
    "ssl.itc_unsup_view": ("weak", "strong"),
    "ssl.student_passes": ("separate", "joint"),
    "ssl.contrastive": ("none", "itcl", "clip"),
    "ssl.select": ("teacher", "student", "best"),
    "ssl.ramp_every": ("epoch", "step"),
    "train.burnin_epoch": ("unlabeled", "labeled"),
    "train.labeled_draw": ("replacement", "cycle"),
    "train.optimizer_scope": ("run", "phase"),
    "train.lr_step": ("epoch", "step"),
    "train.select_over": ("run", "phase"),
    "eval.split": ("train", "valid", "test"),
    "position.head": ("gap_mlp", "region_pool", "six_query"),
    "position.weights": ("student", "teacher"),
    "position.train_split": ("labeled", "train"),
    "runtime.executor": ("local", "slurm", "submitit-local"),
}
