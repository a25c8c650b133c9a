"""The frozen training config, its JSON form, and the resume compatibility check.

Fields left None are filled from the algorithm's defaults (its paper) and the
data by `algorithms.resolve`; the resolved config is written to
`MODEL_DIR/config.json` and compared with the stored one on resume.
"""

import dataclasses
import json
import os

CONFIG_NAME = "config.json"

# Fields that may change between a run and its resumption.
RESUMABLE_CHANGES = frozenset({
    "train_steps", "steps_per_loop", "log_every", "sample_every", "checkpoint_every",
    "keep_checkpoints", "strategy", "cpu_replicas", "fresh", "num_samples", "data_cache",
    "model_dir", "skip_corrupt", "cluster_timeout", "xla", "cluster_workers", "task_index",
    "eval_every", "eval_features", "inception_weights", "eval_feature_layer",
    "eval_num_samples", "keep_best",
})

# --keep_best: lower is better for the distances, higher for the rest
# (training.evaluate computes them).
BEST_METRICS = {"fid": "min", "kid": "min", "precision": "max", "recall": "max",
                "inception_score": "max", "modes": "max", "high_quality": "max"}

XLA_SETTINGS = ("auto", "on", "off")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
# The one precision whose checkpoints hold more (the loss scales): a run
# resumes across the others (auto never picks it), not into or out of it.
HALF_PRECISION_STATE = "mixed_float16"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything that defines a training run. Field names match the flags
  (`pipeline/flags.py` documents each)."""
  algo: str = "sngan"
  data: str | None = None
  model_dir: str | None = None
  strategy: str = "mirrored"
  cpu_replicas: int | None = None
  cluster_timeout: float | None = None
  cluster_workers: tuple = ()
  task_index: int | None = None
  global_batch_size: int | None = None
  train_steps: int = 2000
  steps_per_loop: int = 10
  log_every: int = 100
  sample_every: int = 500
  checkpoint_every: int = 500
  keep_checkpoints: int = 3
  # Evaluation during training, on the chief (training.evaluate.DuringTraining).
  eval_every: int = 0  # 0: off.
  eval_features: str = "inception"
  inception_weights: str | None = None
  eval_feature_layer: str | None = None
  eval_num_samples: int = 5000
  keep_best: str | None = None
  # Speed: XLA-compiled per-replica gradients, and the Keras dtype policy.
  xla: str = "auto"
  precision: str = "auto"
  # Algorithm hyperparameters: None takes the algorithm's (paper) default.
  loss: str | None = None
  g_loss: str | None = None
  n_critic: int | None = None
  lr_g: float | None = None
  lr_d: float | None = None
  beta1: float | None = None
  beta2: float | None = None
  gp_weight: float | None = None
  weight_clip: float | None = None
  lr_decay_start: float | None = None
  # Translation (pix2pix, cyclegan, unit); None takes the paper's value.
  direction: str = "AtoB"
  l1_weight: float | None = None
  cycle_weight: float | None = None
  identity_weight: float | None = None
  kl_weight: float | None = None
  pool_size: int | None = None
  jitter: bool = True
  res_blocks: int | None = None
  # Networks.
  arch: str | None = None
  z_dim: int | None = None
  base_channels: int = 64
  mlp_hidden: tuple = (512, 512, 512)
  label_embedding: int = 0
  ema_decay: float = 0.0
  # Data.
  image_size: int | None = None
  random_flip: bool = False
  shuffle_buffer: int | None = None
  skip_corrupt: bool = False
  data_cache: str | None = None
  # Reproducibility.
  seed: int = 0
  deterministic: bool = False
  fresh: bool = False
  num_samples: int = 64

  def validate(self):
    """Raises ValueError naming the first bad value."""
    positive = ["train_steps", "steps_per_loop", "log_every", "sample_every",
                "checkpoint_every", "keep_checkpoints", "base_channels", "num_samples"]
    for name in positive:
      if getattr(self, name) < 1:
        raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
    for name in ("global_batch_size", "n_critic", "z_dim", "image_size", "shuffle_buffer",
                 "res_blocks"):
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
    if not 0.0 <= self.ema_decay < 1.0:
      raise ValueError(f"--ema_decay must be in [0, 1), got {self.ema_decay}")
    if self.lr_decay_start is not None and not 0.0 <= self.lr_decay_start <= 1.0:
      raise ValueError(f"--lr_decay_start must be in [0, 1], got {self.lr_decay_start}")
    for name in ("lr_g", "lr_d", "gp_weight", "weight_clip", "l1_weight", "cycle_weight",
                 "identity_weight", "kl_weight", "pool_size"):
      value = getattr(self, name)
      if value is not None and value < 0:
        raise ValueError(f"--{name} must be >= 0, got {value}")

  def to_json(self):
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, d):
    known = {f.name for f in dataclasses.fields(cls)}
    d = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known}
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
    if a != b:
      out.append((f.name, a, b))
  return out
