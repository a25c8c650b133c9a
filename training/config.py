"""The frozen training config, its JSON form, and the resume compatibility check.

Fields left None are filled from the algorithm's defaults (its paper) and the
data by `algorithms.resolve`; the resolved config is written to
`MODEL_DIR/config.json` and compared with the stored one on resume.
"""

import dataclasses
import json
import os

import algorithms
from algorithms import gans
from algorithms import translation
from distribute.strategy import STRATEGIES
from settings import setting

CONFIG_NAME = "config.json"

# Fields that may change between a run and its resumption.
RESUMABLE_CHANGES = frozenset({
    "train_steps", "steps_per_loop", "log_every", "sample_every", "checkpoint_every",
    "keep_checkpoints", "strategy", "cpu_replicas", "fresh", "num_samples", "data_cache",
    "model_dir", "skip_corrupt", "cluster_timeout", "xla", "cluster_workers", "task_index",
    "eval_every", "eval_features", "inception_weights", "eval_feature_layer",
    "eval_num_samples", "keep_best",
})

# Fields that came after runs were first stored: their config.json holds no
# value (None when loaded), and the run was trained as these fields' defaults
# resolve, so a stored None resumes under any resolved value.
ADDED_FIELDS = frozenset({"conditional", "penalty", "augment", "per_replica_batch_size"})

# --keep_best: lower is better for the distances and errors, higher for the
# rest (evaluation/evaluate.py computes them; mae, psnr and ssim, the paired
# fidelity of translation runs on paired volumes, evaluation/paired.py).
BEST_METRICS = {"fid": "min", "kid": "min", "precision": "max", "recall": "max",
                "inception_score": "max", "modes": "max", "high_quality": "max",
                "mae": "min", "psnr": "max", "ssim": "max"}

XLA_SETTINGS = ("auto", "on", "off")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
# The one precision whose checkpoints hold more (the loss scales): a run
# resumes across the others (auto never picks it), not into or out of it.
HALF_PRECISION_STATE = "mixed_float16"

# The help of a setting whose default the algorithm owns (its paper's value,
# chosen for the data in its `resolve`): the number is written there only.
ALGO_DEFAULT = "Default: the algorithm's (see --algo)."


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything that defines a training run: each field is a flag of
  `pipeline.train` (settings/: its default and help are written here only)."""
  algo: str = setting("sngan",
      f"Algorithm: {', '.join(algorithms.names(algorithms.SAMPLING))}; translation: "
      f"{', '.join(algorithms.names(algorithms.TRANSLATION))}. A setting whose default is the "
      "algorithm's takes its paper's value for the data (README: the --algo tables; "
      "algorithms/gans.py SPECS, algorithms/translation.py); MODEL_DIR/config.json records "
      "the values of a run.")
  data: str | None = setting(None,
      "A directory made by pipeline.convert, or a source converted into the cache on first use: "
      "builtin:NAME, folder:DIR, tfds:NAME, npz:FILE (DICOM and NIfTI: pipeline.convert them "
      "first). " + ALGO_DEFAULT)
  model_dir: str | None = setting(None, "Run directory. Default: runs/<algo>-<dataset>.")
  strategy: str = setting("mirrored",
      "tf.distribute strategy. mirrored: every visible GPU, else the CPU.",
      choices=STRATEGIES)
  cpu_replicas: int | None = setting(None,
      "Without GPUs: split the CPU into this many logical devices and mirror over them (tests, "
      "trying a multi-replica config).")
  cluster_timeout: float | None = setting(None,
      "multi_worker: seconds every task waits at start-up for the others before failing with the "
      "names of the missing ones (default 600).")
  cluster_workers: tuple = setting((),
      "multi_worker without TF_CONFIG or Slurm: every worker's host:port, the same list on every "
      "worker (worker 0 is the chief).", kind="list")
  task_index: int | None = setting(None,
      "multi_worker with --cluster_workers: this worker's index in that list.")
  global_batch_size: int | None = setting(None,
      f"Examples per step over all replicas. {ALGO_DEFAULT} The image GANs: {gans.IMAGE_BATCH} "
      f"(the papers' 64 by flag), {gans.VECTOR_BATCH} on 2-D data; translation: the paper's.")
  per_replica_batch_size: int | None = setting(None,
      "Instead of --global_batch_size: examples per step on each replica, so that the global "
      "batch grows with the replicas (8 GPUs x 64). A run keeps its global batch: resumed on "
      "another number of replicas it is refused (the difference is listed).")
  train_steps: int = setting(8000, "Generator steps to train for.")
  steps_per_loop: int = setting(10,
      "Generator steps per tf.function call (removes Python overhead).")
  log_every: int = setting(100, "Console and TensorBoard scalars every N steps.")
  sample_every: int = setting(500, "Sample grid PNG every N steps.")
  checkpoint_every: int = setting(500, "Checkpoint every N steps (and at the end).")
  keep_checkpoints: int = setting(3, "Checkpoints to keep.")
  # Evaluation during training, on the chief (evaluation/during_training.py).
  eval_every: int = setting(0,
      "Every N steps (and at the end), the chief computes FID, KID, precision/recall (IS with a "
      "classifier head; modes and high-quality share on 2-D data; translation runs on paired "
      "volumes with a held-out split: also the paired fidelity of the held-out pairs, mae, rmse, "
      "psnr, ssim and ssim_3d) and writes them to TensorBoard (eval/*) and "
      "MODEL_DIR/eval.jsonl. 0: off.")
  eval_features: str = setting("inception",
      "--eval_every feature network: inception (InceptionV3 pool3, ImageNet weights: "
      "--inception_weights or Keras's download), or the path of a Keras model file or SavedModel "
      "(as pipeline.evaluate --features).")
  inception_weights: str | None = setting(None,
      "Local InceptionV3 weights file for --eval_features=inception.")
  eval_feature_layer: str | None = setting(None,
      "--eval_features=PATH: the layer or output to use (default: the penultimate layer, or the "
      "only output).")
  eval_num_samples: int = setting(5000,
      "--eval_every: generated samples, and real examples, per evaluation.")
  keep_best: str | None = setting(None,
      "Keep the best checkpoint by this --eval_every metric in MODEL_DIR/checkpoints/best/ (read "
      "it with --checkpoint=best).", choices=tuple(BEST_METRICS))
  # Speed: XLA-compiled per-replica gradients, and the Keras dtype policy.
  xla: str = setting("auto",
      "XLA-compile each replica's forward and backward pass (the all-reduce and the update stay "
      "outside). auto: what bench/train_step.py measured faster on the device type (see "
      "training/precision.py XLA_AUTO).", choices=XLA_SETTINGS)
  precision: str = setting("auto",
      "Keras dtype policy of the networks. mixed_float16 adds dynamic loss scaling, agreed over "
      "all replicas; outputs, losses and the gradient penalty stay float32. auto: mixed_bfloat16 "
      "for the DCGAN networks and pix2pix on one CPU worker with native bfloat16 (measured "
      "faster, samples checked), else float32 (see training/precision.py use_precision).",
      choices=PRECISIONS)
  # Algorithm hyperparameters: None takes the algorithm's (paper) default.
  loss: str | None = setting(None,
      "Override the algorithm's loss: bce, wasserstein, hinge, least_squares.")
  g_loss: str | None = setting(None,
      "With the bce loss: non-saturating (default) or the original minimax.",
      choices=["ns", "minimax"])
  n_critic: int | None = setting(None,
      "Discriminator steps per generator step. " + ALGO_DEFAULT)
  lr_g: float | None = setting(None, "Generator learning rate. " + ALGO_DEFAULT)
  lr_d: float | None = setting(None, "Discriminator learning rate. " + ALGO_DEFAULT)
  beta1: float | None = setting(None, "Adam beta1. " + ALGO_DEFAULT)
  beta2: float | None = setting(None, "Adam beta2. " + ALGO_DEFAULT)
  gp_weight: float | None = setting(None,
      "Gradient-penalty lambda (--penalty=wgan_gp). " + ALGO_DEFAULT)
  weight_clip: float | None = setting(None, "Critic weight clipping (0: none). " + ALGO_DEFAULT)
  lr_decay_start: float | None = setting(None,
      "Fraction of --train_steps after which every learning rate decays linearly to 0 at "
      "--train_steps (1 = constant). " + ALGO_DEFAULT)
  # Translation (pix2pix, cyclegan, unit); None takes the paper's value.
  direction: str = setting("AtoB",
      "Translation algorithms: which domain is the input.", choices=algorithms.DIRECTIONS)
  l1_weight: float | None = setting(None,
      "pix2pix: L1 weight; unit: reconstruction weight. " + ALGO_DEFAULT)
  cycle_weight: float | None = setting(None,
      "cyclegan, unit: cycle-consistency weight. " + ALGO_DEFAULT)
  identity_weight: float | None = setting(None, "cyclegan: identity weight. " + ALGO_DEFAULT)
  kl_weight: float | None = setting(None,
      "unit: KL weight of the latent codes. " + ALGO_DEFAULT)
  pool_size: int | None = setting(None,
      "cyclegan: images in each discriminator's history (0 disables it). " + ALGO_DEFAULT)
  jitter: bool = setting(True, "pix2pix: the paper's random jitter (enlarge, crop back at "
                         "random, mirror).")
  res_blocks: int | None = setting(None,
      "cyclegan: residual blocks per generator; unit: private blocks per encoder/decoder. "
      + ALGO_DEFAULT + " cyclegan's depends on the image size.")
  # Networks.
  arch: str | None = setting(None,
      "Network family of the image GANs. resnet: SNGAN-style residual G and D, widths and depth "
      "by resolution (32-256 px); cnn: the SNGAN paper's standard CNN (dcgan with 3x3 stride-1 "
      "convolutions). " + ALGO_DEFAULT, choices=gans.ARCHS)
  conditional: bool | None = setting(None,
      "Image GANs: train class-conditionally on labeled data. --arch=resnet: conditional batch "
      "norm in G and a projection discriminator; dcgan and mlp: labels concatenated to the "
      "inputs. " + ALGO_DEFAULT)
  z_dim: int | None = setting(None, "Latent size. " + ALGO_DEFAULT)
  base_channels: int | None = setting(None,
      f"Width of the conv nets. {ALGO_DEFAULT} The image GANs: {gans.SMALL_BASE_CHANNELS} for "
      "the dcgan and cnn networks (half the papers' width: more steps per CPU-minute, see "
      f"README), {gans.BASE_CHANNELS['resnet']} for resnet; translation: "
      f"{translation.BASE_CHANNELS}.")
  mlp_hidden: tuple = setting((512, 512, 512), "Hidden widths of the MLPs.", kind="int_list")
  label_embedding: int = setting(0,
      "Conditional algorithms: 0 for one-hot labels, else the size of a learned label embedding.")
  ema_decay: float | None = setting(None,
      f"Generator EMA decay; samples use the EMA. Default: {gans.RESNET_EMA_DECAY} with "
      "--arch=resnet, else 0 (off).")
  ema_start: int = setting(0,
      "Generator steps before the EMA starts averaging; before, it is a copy of the generator.")
  # Small data: augmentation that the discriminator sees on real and fake
  # images alike, and gradient penalties by name.
  augment: str | None = setting(None,
      "Image GANs and pix2pix: differentiable augmentation of every image the discriminator sees "
      "(DiffAugment): a comma list of color, translation, cutout, or diffaugment (all three), or "
      "none. Default: none, or diffaugment with --ada_target.")
  ada_target: float = setting(0.0,
      f"Adaptive augmentation (ADA): every {gans.ADA_INTERVAL} steps, move the probability p of "
      "each --augment op by the sign of E[sign D(real)] - T (0.6 in the paper); 0: off, every op "
      "always applies.")
  ada_kimg: int = setting(500,
      "--ada_target: thousands of real images for p to move from 0 to 1 (the default is the "
      "paper's).")
  penalty: str | None = setting(None,
      "Image GANs: gradient penalty by name: wgan_gp (weight --gp_weight), r1 (at the real images, "
      "weight --r1_gamma / 2) or none. " + ALGO_DEFAULT, choices=["wgan_gp", "r1", "none"])
  r1_gamma: float | None = setting(None,
      f"--penalty=r1: gamma (default {gans.R1_GAMMA:g}, Mescheder et al.).")
  r1_every: int = setting(1,
      "--penalty=r1: lazy regularization, the penalty every N generator steps with N times the "
      "weight (StyleGAN2: 16).")
  # Data.
  image_size: int | None = setting(None, "Size to convert builtin:/folder: data to.")
  random_flip: bool = setting(False, "Random left-right flips of real images.")
  shuffle_buffer: int | None = setting(None,
      "Shuffle buffer in examples (default: about 64 MB of records).")
  skip_corrupt: bool = setting(False, "Log and skip corrupt shards instead of failing.")
  data_cache: str | None = setting(None,
      "Cache of converted sources (default: $GAN_PIPELINE_DATA or ~/.cache/gan_pipeline).")
  # Reproducibility.
  seed: int = setting(0, "Seed of initialization, noise and shuffling.")
  deterministic: bool = setting(False,
      "Bit-reproducible runs on the same hardware (slower input pipeline).")
  fresh: bool = setting(False, "Start over, deleting the run in --model_dir.")
  num_samples: int = setting(64, "Images in each sample grid.")

  def validate(self):
    """Raises ValueError naming the first bad value."""
    positive = ["train_steps", "steps_per_loop", "log_every", "sample_every",
                "checkpoint_every", "keep_checkpoints", "num_samples", "ada_kimg", "r1_every"]
    for name in positive:
      if getattr(self, name) < 1:
        raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
    if self.global_batch_size is not None and self.per_replica_batch_size is not None:
      raise ValueError(f"give --global_batch_size or --per_replica_batch_size, not both (got "
                       f"{self.global_batch_size} and {self.per_replica_batch_size})")
    for name in ("global_batch_size", "per_replica_batch_size", "n_critic", "z_dim",
                 "image_size", "shuffle_buffer", "res_blocks", "base_channels"):
      value = getattr(self, name)
      if value is not None and value < 1:
        raise ValueError(f"--{name} must be >= 1, got {value}")
    if self.eval_every < 0:
      raise ValueError(f"--eval_every must be >= 0 (0: no evaluation), got {self.eval_every}")
    if self.eval_num_samples < 10:
      raise ValueError(f"--eval_num_samples must be >= 10, got {self.eval_num_samples}")
    if self.keep_best:
      if self.keep_best not in BEST_METRICS:
        raise ValueError(f"--keep_best must be one of {', '.join(BEST_METRICS)}, got "
                         f"{self.keep_best!r}")
      if not self.eval_every:
        raise ValueError(f"--keep_best={self.keep_best} needs --eval_every=N: the metric is "
                         "computed every N steps")
    if self.xla not in XLA_SETTINGS:
      raise ValueError(f"--xla must be one of {', '.join(XLA_SETTINGS)}, got {self.xla!r}")
    if self.precision not in PRECISIONS:
      raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got "
                       f"{self.precision!r}")
    if self.label_embedding < 0:
      raise ValueError(f"--label_embedding must be >= 0, got {self.label_embedding}")
    if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
      raise ValueError(f"--ema_decay must be in [0, 1), got {self.ema_decay}")
    if self.ema_start < 0:
      raise ValueError(f"--ema_start must be >= 0, got {self.ema_start}")
    if not 0.0 <= self.ada_target < 1.0:
      raise ValueError(f"--ada_target must be in [0, 1) (0: off), got {self.ada_target}")
    if self.lr_decay_start is not None and not 0.0 <= self.lr_decay_start <= 1.0:
      raise ValueError(f"--lr_decay_start must be in [0, 1], got {self.lr_decay_start}")
    for name in ("lr_g", "lr_d", "gp_weight", "weight_clip", "l1_weight", "cycle_weight",
                 "identity_weight", "kl_weight", "pool_size", "r1_gamma"):
      value = getattr(self, name)
      if value is not None and value < 0:
        raise ValueError(f"--{name} must be >= 0, got {value}")

  def to_json(self):
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, d):
    known = {f.name for f in dataclasses.fields(cls)}
    d = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known}
    if d.get("g_loss") == "default":  # Runs stored before g_loss became None there.
      d["g_loss"] = None
    return cls(**d)


def load(model_dir):
  """The config stored in `model_dir`, or None."""
  path = os.path.join(model_dir, CONFIG_NAME)
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    return TrainConfig.from_dict(json.load(f))


def conflicts(stored, new):
  """Fields whose change makes `new` unable to resume `stored`: [(name, old, new)]."""
  out = []
  for f in dataclasses.fields(TrainConfig):
    if f.name in RESUMABLE_CHANGES:
      continue
    a, b = getattr(stored, f.name), getattr(new, f.name)
    if f.name == "precision" and HALF_PRECISION_STATE not in (a, b):
      continue  # Same checkpoint contents: float32 variables, no loss scale.
    if f.name in ADDED_FIELDS and a is None:
      continue
    if a != b:
      out.append((f.name, a, b))
  return out
