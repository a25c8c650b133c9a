"""What an algorithm is to the trainer: `Algorithm`, its `Phase`s, the
`DataInfo` it is built for, and the registry of algorithms by name.

An algorithm declares its models, optimizers and *phases* (a discriminator
step repeated n_critic times, then a generator step). For each phase it
provides a per-replica loss built from the pure pieces in `models/`: it
returns per-example values [B_local] and never reduces over the batch or
touches the strategy. The trainer does the rest (see `training/trainer.py`).
The algorithms themselves are in `algorithms/gans.py` and
`algorithms/translation.py`; importing the package registers them all.

What a trained algorithm does is its `Algorithm.inference`: evaluation/ and
inference/ ask that, never the algorithm's class, so that a new family of
algorithms says here how it is evaluated, exported and applied.
"""

import dataclasses

# What a trained algorithm does (`Algorithm.inference`):
# SAMPLING: draws samples from latents, `sample(z, labels)`; evaluated on its
#   samples, exported as `serving_default(z[, labels])`, run by pipeline.sample.
# TRANSLATION: maps images to images of the same size, `translate(x, reverse)`
#   at any multiple of `stride`; evaluated on translated held-out images,
#   exported as `serving_default(images)`, run by pipeline.translate.
SAMPLING = "sampling"
TRANSLATION = "translation"
INFERENCE_KINDS = (SAMPLING, TRANSLATION)
DIRECTIONS = ("AtoB", "BtoA")  # Of a translation: which domain is the input.


@dataclasses.dataclass(frozen=True)
class DataInfo:
  """What the trainer learned about the data from its manifest."""
  kind: str  # image | vector | paired | unpaired
  shape: tuple  # per-example shape of the main feature
  num_classes: int  # 0 when unlabeled
  name: str  # short name for the run directory
  # Medical data (converted from dicom: or nifti:): the manifest's "window",
  # {"image": W} or {"A": W, "B": W} with W a window in modality units
  # (`input.window.Window.from_json`), to map the model's [-1, 1] back; and
  # its "medical" settings (format, window spec, slice_axis, volume_index).
  # None for other data and for run directories written before they existed.
  window: dict | None = dataclasses.field(default=None, hash=False)
  medical: dict | None = dataclasses.field(default=None, hash=False)
  # Medical data: the slices' in-plane pixel spacing after resizing, per
  # domain as the window, {"image": [row mm, column mm]} (see
  # `training.data.pixel_spacing`); None when no series knows its spacing.
  pixel_spacing: dict | None = dataclasses.field(default=None, hash=False)
  # Data converted with --holdout: the manifest's "holdout" record (how the
  # held-out split was made and its fingerprint), which the memorization
  # audit compares with --real's. None otherwise.
  holdout: dict | None = dataclasses.field(default=None, hash=False)
  # How the conversion fitted images of another shape (--resize: crop, pad
  # or stretch), so that translation brings a slice to the scale the model
  # was trained at (`input.images.scaled_shape`). None for run directories
  # written before it was recorded.
  resize: str | None = dataclasses.field(default=None, hash=False)
  # The per-example shape of every feature of the manifest, {feature: shape}:
  # paired data converted with --context_slices=K has 2K + 1 channels in
  # `image_a` and 1 in `image_b`. None for run directories written before
  # it was recorded, whose features all have `shape`.
  shapes: dict | None = dataclasses.field(default=None, hash=False)
  # Volumes (`pipeline.convert --volumes`): the stored voxels' spacing per
  # domain as the window, {"image": [d mm, h mm, w mm]} (the manifest's
  # `medical.voxel_spacing`); None for slices, and where no volume knows it.
  voxel_spacing: dict | None = dataclasses.field(default=None, hash=False)

  def domain_shape(self, domain):
    """The per-example shape of domain "A" or "B" (features `image_a`,
    `image_b`); `shape` where the features share it."""
    return tuple((self.shapes or {}).get(f"image_{domain.lower()}", self.shape))

  @property
  def volumes(self):
    """Whether the data are whole volumes, [D, H, W, C] examples
    (`pipeline.convert --volumes`), not slices."""
    return bool((self.medical or {}).get("volumes"))

  @property
  def context_slices(self):
    """K of medical data converted with --context_slices=K (0 otherwise): its
    A side holds each slice with its K neighbours either side."""
    return (self.medical or {}).get("context_slices", 0)


@dataclasses.dataclass(frozen=True)
class Phase:
  """One kind of update in a generator step.

  Attributes:
    name: `d` or `g` (used in metric names and checkpoints).
    repeats: updates per generator step (n_critic for `d`).
    needs_data: consumes a real batch per update.
    metrics: names of the per-example metrics its loss returns.
    reuse_batch: gets the batch of the phase before it (which must read data
      and run once per step), e.g. pix2pix's generator step.
  """
  name: str
  repeats: int
  needs_data: bool
  metrics: tuple
  reuse_batch: bool = False


# name -> Algorithm subclass; filled by `register`.
_REGISTRY = {}


def register(name):
  def wrap(cls):
    _REGISTRY[name] = cls
    return cls
  return wrap


def names(inference=None):
  """The registered names, sorted; only those whose `Algorithm.inference` is
  `inference` when given."""
  return sorted(name for name, cls in _REGISTRY.items()
                if inference is None or cls.inference == inference)


def check_settings(config):
  """Refuses a setting that `config.algo` does not read.

  A setting is an algorithm's when some registered algorithm declares it in
  `hyperparameters()`; given to another algorithm (at a value other than its
  default) it would be stored in config.json and silently ignored.

  Raises:
    ValueError: one line naming the setting and the algorithms that use it.
  """
  users = {}
  for name in names():
    for setting in _REGISTRY[name].hyperparameters():
      users.setdefault(setting, []).append(name)
  mine = get(config.algo).hyperparameters()
  for field in dataclasses.fields(config):
    if field.name in users and field.name not in mine:
      value = getattr(config, field.name)
      if value != field.default:
        raise ValueError(f"--{field.name}={value} is not read by --algo={config.algo}; it is "
                         f"used by {', '.join(sorted(users[field.name]))}")


def get(name):
  """The Algorithm class registered as `name`.

  Raises:
    ValueError: unknown name; the message lists the valid ones.
  """
  if name not in _REGISTRY:
    raise ValueError(f"unknown --algo {name!r}; valid: {', '.join(names())}")
  return _REGISTRY[name]


class Algorithm:
  """Base class: what the trainer needs from an algorithm.

  Subclasses implement `resolve`, `build`, `phases`, `loss` and, where needed,
  `before_update` (replica context, before the gradient tape) and
  `after_update` (cross-replica context, after the optimizer step).
  A trained algorithm is used as its `inference` says (SAMPLING or
  TRANSLATION, above), through the methods of that kind.
  """
  default_data = "builtin:shapes"
  inference = SAMPLING
  # TRANSLATION: whether the model also translates against the direction it
  # was trained in (`translate(x, reverse=True)`).
  reversible = False
  # What `bfloat16_checked` answers where the answer does not depend on the
  # config.
  checked_in_bfloat16 = False

  @classmethod
  def hyperparameters(cls):
    """The settings of its own (TrainConfig fields) that this algorithm reads;
    the common ones (data, strategy, steps, ...) are everyone's.
    `check_settings` refuses any other algorithm's setting."""
    return frozenset()

  def __init__(self, config, data):
    self.config = config
    self.data = data
    self.generator = None
    self.ema_generator = None
    self.optimizers = {}
    self.example_state = {}

  @classmethod
  def resolve(cls, config, data):
    """Fills the config's None fields with this algorithm's defaults."""
    raise NotImplementedError

  def build(self):
    """Creates models and optimizers (called inside strategy.scope())."""
    raise NotImplementedError

  def phases(self):
    raise NotImplementedError

  def variables(self, phase):
    raise NotImplementedError

  def loss(self, phase, batch, rand):
    """Per-replica loss of `phase`: (per-example loss [B], {metric: [B]}).

    An algorithm with per-example state (`example_state`: {name: variable
    whose first axis is the global batch}) reads its rows with
    `rand.rows(variable)` and returns a third item, {name: new rows}; the
    trainer gathers every replica's rows into the variable after the update.
    """
    raise NotImplementedError

  def before_update(self, phase):
    pass

  def after_update(self, phase, step, metrics):
    """Cross-replica context, after each update of `phase`.

    Args:
      phase: the `Phase` just updated.
      step: the generator step (int64 variable; the step being trained).
      metrics: {name: float32 scalar}, the phase's metrics of this update,
        already averaged over the global batch (the trainer's one reduction);
        the same on every replica and worker.
    """
    del phase, step, metrics

  def xla_unsupported(self):
    """Why XLA cannot compile this algorithm's losses (an op it has no kernel
    for), or None when it can."""
    return None

  def bfloat16_checked(self):
    """Whether these networks were measured faster in mixed_bfloat16 on a CPU
    with native bfloat16 (bench/train_step.py) and their samples found
    unharmed (bench/quality.py, bench/translation_precision.py): the only
    case `--precision=auto` picks bfloat16 (training.precision.use_precision).
    The class's `checked_in_bfloat16`, unless it depends on the config
    (algorithms/gans.py: the architecture)."""
    return self.checked_in_bfloat16

  def checkpoint_items(self):
    raise NotImplementedError

  # Translation algorithms: the split whose first examples the sample grids
  # show (the trainer reads them); None: the grids need no data.
  preview_split = None

  def preview_inputs(self, n, seed, examples=None):
    """The fixed inputs of every sample grid of a run (numpy or tensors)."""
    raise NotImplementedError

  def preview(self, inputs):
    """What a sample grid shows for `inputs`: [N, ...] in the data's range."""
    raise NotImplementedError

  def preview_columns(self, n):
    """Columns of the sample grid of n pictures (None: square)."""
    return None

  def data_requirements(self):
    raise NotImplementedError

  # --- What a trained algorithm does (`inference`) ---

  def sample(self, z, labels=None):
    """SAMPLING: samples [B, ...] in the data's range from latents z
    [B, z_dim] (and labels [B] int32 of conditional algorithms, else None)."""
    raise NotImplementedError

  def translate(self, x, reverse=False):
    """TRANSLATION: images [B, H, W, C] in [-1, 1], H and W multiples of
    `stride`, translated in the configured direction (the other way with
    reverse=True, where `reversible`)."""
    raise NotImplementedError

  def translation_networks(self):
    """TRANSLATION: the networks `translate` runs (whose weights an export holds)."""
    raise NotImplementedError

  def translation_direction(self, direction=None):
    """TRANSLATION: (direction, reverse) to translate in for a requested
    --direction (None: the trained one), reverse meaning against it.

    Raises:
      ValueError: not a direction, or one this model cannot translate.
    """
    trained = self.config.direction
    direction = direction or trained
    if direction not in DIRECTIONS:
      raise ValueError(f"--direction must be {' or '.join(DIRECTIONS)}, got {direction!r}")
    reverse = direction != trained
    if reverse and not self.reversible:
      raise ValueError(f"this {self.config.algo} model translates {trained} only; --direction="
                       f"{direction} needs a model trained with that direction")
    return direction, reverse
