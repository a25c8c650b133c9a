"""Loading a trained generator from a run directory and drawing samples:
the library behind `pipeline.sample` (`run`)."""

import dataclasses
import os

import numpy as np
import tensorflow as tf

import algorithms
from inference import volume_samples
from inference import volumes
from settings import required, setting
from training import run_dir
from training import samples as samples_lib


@dataclasses.dataclass(frozen=True)
class SampleConfig:
  """What `pipeline.sample` does: each field is one of its flags (settings/)."""
  model_dir: str = required("Run directory of pipeline.train.")
  output: str = required("*.npz, *.png (grid) or a directory of PNGs (see --format).")
  format: str | None = setting(
      None, "Samples in the --output directory: png (one 8-bit PNG each), png16 (one 16-bit "
      "PNG each, the codes of the data's window) or nifti (one stack samples.nii.gz in "
      "modality units; 1-channel DICOM/NIfTI data only); png16 and nifti also write "
      "window.json. Runs trained on volumes: nifti only (one NIfTI volume per sample, with "
      "the training voxel spacing); a *.png grid shows their three mid-planes. Default: by "
      "--output's name (*.npz, *.png grid, else png).",
      choices=volumes.SAMPLE_FORMATS)
  checkpoint: str | None = setting(
      None, "Checkpoint path, step, or best (--keep_best's; default: the latest).")
  num: int = setting(64, "Number of samples (without --interpolate).")
  labels: tuple = setting(
      (), "Conditional algorithms: class indices to cycle over (default: all classes; with "
      "--interpolate, one class per row).", kind="int_list")
  seed: int = setting(0, "Seed of the latent draws: the same seed, checkpoint and flags give "
                      "the same samples.")
  interpolate: int = setting(
      0, "N > 1: latent interpolation grid instead of independent samples: --rows rows of N "
      "images, each row a spherical interpolation (slerp) between two latents drawn from "
      "--seed.")
  rows: int = setting(8, "Rows of the --interpolate grid.")

  def validate(self):
    """Raises ValueError naming the first bad value."""
    if not self.model_dir or not self.output:
      raise ValueError("--model_dir and --output are required")
    if self.num < 1:
      raise ValueError(f"--num must be >= 1, got {self.num}")
    if self.interpolate < 0 or self.interpolate == 1:
      raise ValueError(f"--interpolate must be 0 (off) or >= 2, got {self.interpolate}")
    if self.rows < 1:
      raise ValueError(f"--rows must be >= 1, got {self.rows}")
    if self.format and self.output.endswith((".npz", ".png")):
      raise ValueError(f"--format={self.format} writes a directory; --output must not end in "
                       f".npz or .png, got {self.output!r}")


def load_algorithm(model_dir, checkpoint=None):
  """Rebuilds a run's algorithm and restores its generator(s) (also of
  translation algorithms).

  Args:
    model_dir: a run directory written by `pipeline.train`.
    checkpoint: a checkpoint path, a step number, or "best" (the best
      checkpoint kept by --keep_best); None: the latest.

  Returns:
    (algorithm, step).

  Raises:
    ValueError: not a run directory, or no such checkpoint.
  """
  config, data = run_dir.load_run(model_dir)
  path = run_dir.resolve_checkpoint(model_dir, checkpoint)
  algorithm = algorithms.get(config.algo)(config, data)
  algorithm.build()
  # The generators only (of every algorithm: generator, ema_generator,
  # generator_ab/_ba, unit); discriminators, optimizers and pools stay behind.
  items = {k: v for k, v in algorithm.checkpoint_items().items()
           if not k.startswith(("discriminator", "pools")) and "optimizer" not in k}
  step = tf.Variable(0, dtype=tf.int64)
  tf.train.Checkpoint(step=step, **run_dir.trackable_items(items)).restore(
      path).expect_partial()
  return algorithm, int(step.numpy())


def _latents_and_labels(algorithm, num, labels, seed):
  num_classes = getattr(algorithm, "num_classes", 0)
  z = tf.random.stateless_normal([num, algorithm.config.z_dim], seed=[seed, 777], alg="philox")
  y = None
  if num_classes:
    classes = list(range(num_classes)) if labels is None else list(labels)
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
      raise ValueError(f"--labels {bad} outside 0..{num_classes - 1}")
    y = np.resize(np.asarray(classes, np.int32), num)
  elif labels:
    raise ValueError(f"--labels given but {algorithm.config.algo} is not conditional")
  return z, y


def iter_samples(algorithm, num, labels=None, seed=0, batch_size=256):
  """Yields (samples [b, ...] in [-1, 1], labels [b] or None) in batches.

  The same `num` samples as `sample` (batch i holds samples
  [i * batch_size, (i + 1) * batch_size)), without holding them all.
  """
  z, y = _latents_and_labels(algorithm, num, labels, seed)
  for start in range(0, num, batch_size):
    zb = z[start:start + batch_size]
    yb = None if y is None else y[start:start + batch_size]
    yield algorithm.sample(zb, None if yb is None else tf.constant(yb)).numpy(), yb


def sample(algorithm, num, labels=None, seed=0, batch_size=256):
  """Draws `num` samples; returns (samples [num, ...] in [-1, 1], labels or None).

  The latents are a pure function of (`seed`, `num`): the same seed gives the
  same samples.

  Args:
    labels: for conditional algorithms, a list of class indices cycled over
      the samples (None: all classes in turn).
  """
  batches = list(iter_samples(algorithm, num, labels, seed, batch_size))
  x = np.concatenate([b for b, _ in batches])
  y = None if batches[0][1] is None else np.concatenate([lab for _, lab in batches])
  return x, y


def slerp(z0, z1, t):
  """Spherical interpolation (White 2016, "Sampling Generative Networks").

  For Gaussian latents in high dimensions, linear interpolation passes
  through points of unusually small norm, which the generator never saw in
  training; slerp keeps the norm typical. Falls back to linear interpolation
  where z0 and z1 are (anti)parallel.

  Args:
    z0, z1: [R, D] endpoints.
    t: [N] fractions in [0, 1].

  Returns:
    [R, N, D].
  """
  z0, z1 = np.asarray(z0, np.float64), np.asarray(z1, np.float64)
  t = np.asarray(t, np.float64)[None, :, None]
  cos = np.sum(z0 * z1, axis=1) / (np.linalg.norm(z0, axis=1) * np.linalg.norm(z1, axis=1))
  omega = np.arccos(np.clip(cos, -1.0, 1.0))[:, None, None]
  sin = np.sin(omega)
  linear = np.abs(sin) < 1e-6
  safe = np.where(linear, 1.0, sin)
  w0 = np.where(linear, 1.0 - t, np.sin((1.0 - t) * omega) / safe)
  w1 = np.where(linear, t, np.sin(t * omega) / safe)
  return w0 * z0[:, None, :] + w1 * z1[:, None, :]


def interpolate(algorithm, rows, steps, labels=None, seed=0, batch_size=256):
  """Latent interpolation grids: `rows` rows of `steps` samples each.

  Row r goes from latent z_r to latent z'_r (both drawn from the seed) by
  `slerp` at t = 0, 1/(steps-1), ..., 1; conditional algorithms keep one
  class per row (cycling over `labels`, default all classes).

  Returns:
    (samples [rows * steps, ...] row-major, labels [rows * steps] or None).
  """
  if steps < 2:
    raise ValueError(f"--interpolate needs at least 2 steps per row, got {steps}")
  if rows < 1:
    raise ValueError(f"interpolation needs at least 1 row, got {rows}")
  z, y = _latents_and_labels(algorithm, 2 * rows, labels, seed)
  z = z.numpy()
  path = slerp(z[:rows], z[rows:], np.linspace(0.0, 1.0, steps))
  path = tf.constant(path.reshape(rows * steps, -1), tf.float32)
  y = None if y is None else np.repeat(y[:rows], steps)
  out = []
  for start in range(0, rows * steps, batch_size):
    yb = None if y is None else tf.constant(y[start:start + batch_size])
    out.append(algorithm.sample(path[start:start + batch_size], yb).numpy())
  return np.concatenate(out), y


def run(config):
  """Draws the samples `config` asks for and writes them to `config.output`.

  Returns:
    (number of samples written, the checkpoint's step).

  Raises:
    ValueError: bad settings, not a run directory, no such checkpoint, a
      translation run, bad labels, 2-D samples asked for as a folder of PNGs,
      or a --format the data cannot take (`volumes.check_sample_format`;
      for volumes `volume_samples.check_format`).
  """
  config.validate()
  out = config.output
  algorithm, step = load_algorithm(config.model_dir, config.checkpoint)
  if algorithm.inference == algorithms.TRANSLATION:
    raise ValueError(f"{config.model_dir!r} holds a {algorithm.config.algo} run, a translation "
                     "model: it draws no samples (apply it with python -m pipeline.translate)")
  volume_run = volumes.is_volume_run(algorithm.data)
  if volume_run:
    volume_samples.check_format(config.format, out, algorithm.data)
  else:
    volumes.check_sample_format(config.format, algorithm.data)
  labels = list(config.labels) or None
  columns = None
  if config.interpolate:
    x, y = interpolate(algorithm, config.rows, config.interpolate, labels, config.seed)
    columns = config.interpolate
  else:
    x, y = sample(algorithm, config.num, labels, config.seed)
  if x.ndim == 2 and not out.endswith((".npz", ".png")):
    raise ValueError("2-D samples go to .npz or .png")
  if volume_run and config.format == "nifti":
    volume_samples.write(out, x, algorithm.data)
  elif config.format in ("png16", "nifti"):
    volumes.write_samples(out, x, config.format, algorithm.data, algorithm.config.data)
  elif out.endswith(".npz"):
    np.savez(out, x=x, **({"y": y} if y is not None else {}))
  elif out.endswith(".png"):
    picture = (samples_lib.scatter(x) if x.ndim == 2
               else samples_lib.image_grid(x, columns=columns))
    samples_lib.save_png(out, picture)
  else:
    os.makedirs(out, exist_ok=True)
    for i, img in enumerate(x):
      samples_lib.save_png(os.path.join(out, f"{i:05d}.png"),
                           samples_lib.image_grid(img[None], columns=1, pad=0))
  return len(x), step
