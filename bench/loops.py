"""The training loops that bench/train_step.py and bench/gpu_check.py time,
and the built trainer that bench/steps_per_loop.py and bench/joint_d.py call.

- `HandWritten`: the usual TF GAN loop, eager or with one `tf.function` per
  step, on the algorithm's own models and optimizers (`run_hand_written`);
- `HandWrittenPix2Pix`: the TensorFlow pix2pix tutorial's step on pix2pix's
  own networks and optimizers (`run_hand_written` of a pix2pix run);
- the trainer: `training.trainer.run` with TrainConfig fields changed
  (`run_trainer`), timed over its second log interval;
- `built_trainer`: a built trainer whose `train_loop` and `one_step` a
  benchmark calls itself.
"""

import dataclasses
import shutil
import tempfile

import keras
import tensorflow as tf

import algorithms
from algorithms import gans
from algorithms import translation_ops
from input import manifest as manifest_lib
from input import reader
from models import losses
from models import penalties
from models import spectral_norm
from training import config as config_lib
from training import data as data_lib
from training import precision as precision_lib
from training import trainer

from bench import timing

# The algorithms `HandWritten` implements (those of `gans.SPECS` on the DCGAN networks).
ALGOS = ("wgan_gp", "sngan", "dcgan")
# The translation algorithm `HandWrittenPix2Pix` implements.
HAND_WRITTEN_TRANSLATION = ("pix2pix",)
# The precisions the hand-written loops build their networks in (they scale no
# loss, so not mixed_float16).
HAND_WRITTEN_PRECISIONS = ("float32", "mixed_bfloat16")
# Steps between logs, samples and checkpoints that never come in a benchmark's calls.
NEVER = 10**9


@dataclasses.dataclass(frozen=True)
class LoopRun:
  """One timed run of a loop on converted data."""
  algo: str
  data: str  # A converted dataset directory.
  batch_size: int  # The global batch.
  steps: int  # Timed generator steps.
  warmup: int  # Untimed generator steps first (the hand-written loops).
  base_channels: int | None = None  # The networks' width; None: the trainer's default.
  trainer_strategy: str = "one_device"  # The trainer's --strategy.
  precision: str = "float32"  # The hand-written loops' dtype policy.


def resolved_config(algo, data_dir, batch_size, base_channels=None):
  """The algorithm's resolved TrainConfig and DataInfo for this data, as the trainer
  resolves them (paper defaults: loss, n_critic, learning rates, betas, z_dim; the
  trainer's base width unless `base_channels` is given)."""
  manifest = manifest_lib.load(data_dir)
  info = data_lib.describe(manifest, data_dir)
  config = config_lib.TrainConfig(algo=algo, data=data_dir, global_batch_size=batch_size,
                                  base_channels=base_channels)
  return algorithms.get(algo).resolve(config, info), info


# ---------------------------------------------------------------------------
# The hand-written loops.


def _built_algorithm(config, info, precision):
  """The algorithm of `config`, seeded and built under the dtype policy `precision`."""
  if precision not in HAND_WRITTEN_PRECISIONS:
    raise ValueError(f"the hand-written loops run in {' or '.join(HAND_WRITTEN_PRECISIONS)}, "
                     f"got {precision!r}")
  keras.utils.set_random_seed(config.seed)
  algorithm = algorithms.get(config.algo)(config, info)
  precision_lib.build_in_policy(algorithm, precision)
  return algorithm


def _iterator(data_dir, seed, batch_size):
  """Batches of the data as most TF code reads it: float32 in [-1, 1] made on the
  host, with the trainer's shuffle buffer (the same records held in memory)."""
  shuffle = data_lib.auto_shuffle_buffer(manifest_lib.load(data_dir))
  return iter(reader.make_dataset(reader.ReaderConfig(
      data_dir, shuffle_buffer=shuffle, seed=seed, normalize=True), batch_size))


class HandWritten:
  """The usual TF GAN loop: `eager`, or with `compiled` one tf.function per step.

  The models and optimizers are the algorithm's own (`ImageGAN.build`, under
  the dtype policy `precision`); the step is written here the way most GAN
  code writes it.
  """

  def __init__(self, algo, data_dir, batch_size, compiled, base_channels=None,
               precision="float32"):
    self.config, info = resolved_config(algo, data_dir, batch_size, base_channels)
    self.spec = gans.SPECS[algo]
    self.batch_size = batch_size
    algorithm = _built_algorithm(self.config, info, precision)
    self.generator, self.discriminator = algorithm.generator, algorithm.discriminator
    self.d_optimizer, self.g_optimizer = algorithm.optimizers["d"], algorithm.optimizers["g"]
    c = self.config
    self.g_loss_fn, self.d_loss_fn = losses.get(c.loss, c.g_loss)
    self.iterator = _iterator(data_dir, c.seed, batch_size)
    self.d_step = tf.function(self._d_step) if compiled else self._d_step
    self.g_step = tf.function(self._g_step) if compiled else self._g_step

  def _d_step(self, real):
    """One discriminator (critic) update on one real batch."""
    c, g, d = self.config, self.generator, self.discriminator
    if self.spec.spectral_norm:
      spectral_norm.power_iteration(d)
    z = tf.random.normal([self.batch_size, c.z_dim])
    with tf.GradientTape() as tape:
      fake = g(z, training=True)
      loss = tf.reduce_mean(self.d_loss_fn(d(real, training=True), d(fake, training=True)))
      if c.gp_weight:
        alpha = tf.random.uniform([self.batch_size])
        gp, _ = penalties.wasserstein_gradient_penalty(
            lambda x: d(x, training=True), real, fake, alpha)
        loss += c.gp_weight * tf.reduce_mean(gp)
    grads = tape.gradient(loss, d.trainable_variables)
    self.d_optimizer.apply_gradients(zip(grads, d.trainable_variables))
    return loss

  def _g_step(self):
    """One generator update."""
    c, g, d = self.config, self.generator, self.discriminator
    z = tf.random.normal([self.batch_size, c.z_dim])
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(self.g_loss_fn(d(g(z, training=True), training=True)))
    grads = tape.gradient(loss, g.trainable_variables)
    self.g_optimizer.apply_gradients(zip(grads, g.trainable_variables))
    return loss

  def generator_step(self):
    """n_critic discriminator steps, each on a new real batch, then a generator step."""
    for _ in range(self.config.n_critic):
      d_loss = self.d_step(next(self.iterator)["image"])
    return d_loss, self.g_step()

  def sync(self):
    """Waits for queued device work: reads a weight the last update wrote."""
    return keras.ops.convert_to_numpy(self.generator.trainable_variables[-1])


class _Jitter:
  """`uniform(name, shape, minval, maxval)` from TensorFlow's global generator:
  what `translation_ops.jitter_boxes` draws from, for a loop without the trainer's
  `StepRandomness`."""

  def __init__(self, batch_size):
    self.batch_size = batch_size

  def uniform(self, name, shape=(), minval=0.0, maxval=1.0):
    del name
    return tf.random.uniform([self.batch_size, *shape], minval, maxval)


class HandWrittenPix2Pix:
  """The TensorFlow pix2pix tutorial's loop on pix2pix's own networks:
  `eager`, or with `compiled` one tf.function per step.

  The networks (U-Net generator, conditional PatchGAN) and the two Adam
  optimizers are `algorithms.translation.Pix2Pix`'s, built under the dtype
  policy `precision`; the losses are its: BCE + `l1_weight` x L1 for the
  generator, half the BCE of real and fake for the discriminator, each a
  plain `reduce_mean`. The step is the tutorial's: the same random jitter as
  the trainer's (`translation_ops.jitter_boxes`, drawn from `tf.random`), one
  generator forward pass, two tapes, both optimizers applied. The trainer's
  step does more arithmetic than this: its discriminator phase and then its
  generator phase each run the generator and D(fake) forward (Phase
  `reuse_batch`), the order of the reference PyTorch code, where D(fake) for
  G's update sees the just-updated D.
  """

  def __init__(self, data_dir, batch_size, compiled, base_channels=None,
               precision="float32"):
    self.config, info = resolved_config("pix2pix", data_dir, batch_size, base_channels)
    if self.config.direction != "AtoB":
      raise ValueError(f"the hand-written pix2pix loop translates AtoB, got "
                       f"{self.config.direction}")
    algorithm = _built_algorithm(self.config, info, precision)
    self.generator, self.discriminator = algorithm.generator, algorithm.discriminator
    self.d_optimizer, self.g_optimizer = algorithm.optimizers["d"], algorithm.optimizers["g"]
    self.jitter = _Jitter(batch_size) if self.config.jitter else None
    self.iterator = _iterator(data_dir, self.config.seed, batch_size)
    self.step = tf.function(self._step) if compiled else self._step

  def _step(self, x, y):
    """One update of both networks on one (input, target) batch."""
    g, d = self.generator, self.discriminator
    if self.jitter is not None:  # The same crop and mirror for input and target.
      boxes = translation_ops.jitter_boxes(self.jitter)
      x, y = translation_ops.apply_boxes(x, boxes), translation_ops.apply_boxes(y, boxes)
    with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
      fake = g(x, training=True)
      real_logits = d(y, condition=x, training=True)
      fake_logits = d(fake, condition=x, training=True)
      g_loss = (tf.reduce_mean(losses.modified_generator_loss(fake_logits))
                + self.config.l1_weight * tf.reduce_mean(losses.l1(fake, y)))
      d_loss = 0.5 * tf.reduce_mean(losses.minimax_discriminator_loss(real_logits, fake_logits))
    g_grads = g_tape.gradient(g_loss, g.trainable_variables)
    d_grads = d_tape.gradient(d_loss, d.trainable_variables)
    self.g_optimizer.apply_gradients(zip(g_grads, g.trainable_variables))
    self.d_optimizer.apply_gradients(zip(d_grads, d.trainable_variables))
    return d_loss, g_loss

  def generator_step(self):
    batch = next(self.iterator)
    return self.step(batch["image_a"], batch["image_b"])

  def sync(self):
    """Waits for queued device work: reads a weight the last update wrote."""
    return keras.ops.convert_to_numpy(self.generator.trainable_variables[-1])


def run_hand_written(run, compiled):
  """Times the `eager` (or with `compiled`, the `tf_function`) loop of `run`
  (a LoopRun, in `run.precision`); returns the row's figures."""
  if run.algo in HAND_WRITTEN_TRANSLATION:
    loop = HandWrittenPix2Pix(run.data, run.batch_size, compiled, run.base_channels,
                              run.precision)
    how = ("the TF pix2pix tutorial's step: one G forward, two tapes"
           + (", in one tf.function" if compiled else ", eager"))
  elif run.algo in ALGOS:
    loop = HandWritten(run.algo, run.data, run.batch_size, compiled, run.base_channels,
                       run.precision)
    how = ("one tf.function per D step and per G step" if compiled
           else "eager; n_critic loop and input iterator in Python")
  else:
    raise ValueError(f"no hand-written loop for {run.algo}; written for "
                     f"{', '.join(ALGOS + HAND_WRITTEN_TRANSLATION)}")
  seconds = timing.time_generator_steps(loop, run.steps, run.warmup)
  return {"steps_per_sec": run.steps / seconds, "seconds": seconds,
          "real_per_step": loop.config.n_critic * run.batch_size,
          "warmup_steps": run.warmup, "base_channels": loop.config.base_channels,
          "precision": run.precision, "note": f"{how}, {run.precision}"}


# ---------------------------------------------------------------------------
# The trainer.


def trainer_config(run, overrides, model_dir):
  """The TrainConfig of a trainer variant: `overrides` (TrainConfig fields) on the
  trainer's defaults, `2 * run.steps` steps logged every `run.steps`."""
  return config_lib.TrainConfig(
      algo=run.algo, data=run.data, model_dir=model_dir, strategy=run.trainer_strategy,
      global_batch_size=run.batch_size, base_channels=run.base_channels,
      train_steps=2 * run.steps,
      log_every=run.steps, sample_every=2 * run.steps, checkpoint_every=2 * run.steps,
      **overrides)


def run_trainer(run, overrides):
  """Times `training.trainer.run` with `overrides`; returns the row's figures."""
  model_dir = tempfile.mkdtemp(prefix="bench_train_step_")
  try:
    result = trainer.run(trainer_config(run, overrides, model_dir))
  finally:
    shutil.rmtree(model_dir, ignore_errors=True)
  return trainer_figures(run, result)


def trainer_figures(run, result):
  """The row's figures from a `TrainResult` of `trainer_config(run, ...)`: its
  second log interval."""
  if result.step != 2 * run.steps or "steps_per_sec" not in result.metrics:
    raise RuntimeError(f"the trainer stopped at step {result.step} of {2 * run.steps}")
  c = result.config
  steps_per_sec = result.metrics["steps_per_sec"]
  per_call = min(c.steps_per_loop, run.steps)
  note = [f"strategy {c.strategy}, steps_per_loop {c.steps_per_loop}"
          + (f" (calls of {per_call}: the log interval)" if per_call < c.steps_per_loop else "")]
  note.append(f"xla {c.xla} -> {'on' if result.xla else 'off'}")
  note.append(f"precision {c.precision} -> {result.precision}")
  return {"steps_per_sec": steps_per_sec, "seconds": run.steps / steps_per_sec,
          "real_per_step": c.n_critic * run.batch_size,
          "warmup_steps": run.steps, "base_channels": c.base_channels,
          "note": ", ".join(note),
          "xla": result.xla, "precision": result.precision}


def built(config):
  """A built, not yet trained run of `config` (`.train()` trains it), as the
  tests use it: its initial weights and its parts can be read or changed first."""
  return trainer._Trainer(config)  # pylint: disable=protected-access


def built_trainer(algo, model_dir, **fields):
  """A built trainer on one device that never logs, samples or checkpoints,
  for a benchmark to call its `train_loop` or `one_step` itself. `fields`:
  more TrainConfig fields."""
  return built(config_lib.TrainConfig(
      algo=algo, model_dir=model_dir, strategy="one_device", train_steps=NEVER,
      log_every=NEVER, sample_every=NEVER, checkpoint_every=NEVER, **fields))


def host_reads(t):
  """What the trainer's host loop reads after every call: the step and the metric sums."""
  int(t.step.numpy())
  return {n: float(v.numpy()) for n, v in t.metric_sums.items()}


def device_name():
  """The first GPU's name, or "CPU"."""
  gpus = tf.config.list_logical_devices("GPU")
  return gpus[0].name if gpus else "CPU"


def peak_gpu_mib():
  """The process's peak memory on its first GPU (MiB), or None without a GPU."""
  if not tf.config.list_logical_devices("GPU"):
    return None
  return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
