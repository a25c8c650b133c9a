"""The training loops that bench/train_step.py and bench/gpu_check.py time,
and the built trainer that bench/steps_per_loop.py and bench/joint_d.py call.

- `HandWritten`: the usual TF GAN loop, eager or with one `tf.function` per
  step, on the algorithm's own models and optimizers (`run_hand_written`);
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
from input import manifest as manifest_lib
from input import reader
from models import losses
from models import penalties
from models import spectral_norm
from training import config as config_lib
from training import data as data_lib
from training import trainer

from bench import timing

# The algorithms `HandWritten` implements (those of `gans.SPECS` on the DCGAN networks).
ALGOS = ("wgan_gp", "sngan", "dcgan")
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


class HandWritten:
  """The usual TF GAN loop: `eager`, or with `compiled` one tf.function per step.

  The models and optimizers are the algorithm's own (`ImageGAN.build`); the
  step is written here the way most GAN code writes it.
  """

  def __init__(self, algo, data_dir, batch_size, compiled, base_channels=None):
    self.config, info = resolved_config(algo, data_dir, batch_size, base_channels)
    self.spec = gans.SPECS[algo]
    self.batch_size = batch_size
    keras.utils.set_random_seed(self.config.seed)
    algorithm = algorithms.get(algo)(self.config, info)
    algorithm.build()
    self.generator, self.discriminator = algorithm.generator, algorithm.discriminator
    self.d_optimizer, self.g_optimizer = algorithm.optimizers["d"], algorithm.optimizers["g"]
    c = self.config
    self.g_loss_fn, self.d_loss_fn = losses.get(c.loss, c.g_loss)
    # The trainer's shuffle buffer: the same records held in memory.
    manifest = manifest_lib.load(data_dir)
    shuffle = data_lib.auto_shuffle_buffer(manifest)
    dataset = reader.make_dataset(reader.ReaderConfig(
        data_dir, shuffle_buffer=shuffle, seed=c.seed, normalize=True), batch_size)
    self.iterator = iter(dataset)
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


def run_hand_written(run, compiled):
  """Times the `eager` (or with `compiled`, the `tf_function`) loop of `run`
  (a LoopRun); returns the row's figures."""
  loop = HandWritten(run.algo, run.data, run.batch_size, compiled, run.base_channels)
  seconds = timing.time_generator_steps(loop, run.steps, run.warmup)
  return {"steps_per_sec": run.steps / seconds, "seconds": seconds,
          "real_per_step": loop.config.n_critic * run.batch_size,
          "warmup_steps": run.warmup, "base_channels": loop.config.base_channels,
          "note": "eager; n_critic loop and input iterator in Python" if not compiled
                  else "one tf.function per D step and per G step"}


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
