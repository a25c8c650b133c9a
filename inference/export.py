"""Exporting a trained generator as a self-contained SavedModel (`pipeline.export`).

The SavedModel holds the generator's graph and weights only; loading it needs
TensorFlow and nothing of this project:

    m = tf.saved_model.load("exported/")
    serve = m.signatures["serving_default"]
    images = serve(z=tf.random.normal([16, Z_DIM]))["images"]           # sampling GANs
    images = serve(z=z, labels=tf.constant([0, 1, ...], tf.int32))["images"]  # conditional
    out = serve(images=x)["images"]                                     # translation

Sampling algorithms: `serving_default(z [None, z_dim] float32[, labels [None]
int32])` -> `images` [None, H, W, C] in [-1, 1] (or [None, D] vectors,
unbounded: the MLP of 2-D data has a linear output), from the EMA generator
when the run has one. `labels` is an input only for conditional algorithms.

Translation algorithms: `serving_default(images [None, None, None, C] float32
in [-1, 1])` -> `images`, of the same size. Any size is accepted: inside the
signature the input is reflection-padded on the bottom and right to a
multiple of the network's stride (edge-padded where the image is too small to
reflect) and the output is cropped back, as `pipeline.translate` does.

Runs trained on volumes (`pipeline.convert --volumes`) export the same
signatures one rank up: a sampling generator's `images` are [None, D, H, W,
C]; a 3-D translation model takes and returns [None, None, None, None, C],
padded and cropped along D, H and W alike. It was trained on patches
(`patch_size` in export_info.json), which it translates exactly as in
training; `pipeline.translate` translates a whole scan by Gaussian-blended
sliding windows of that size (`inference.sliding_window`).

The range: every signature takes and returns the model's [-1, 1], as in
training: the input is not rescaled inside (translation models expect
images already in [-1, 1]), and every image generator ends in tanh. Stored
8-bit or 16-bit codes map to it as `code / max_code * 2 - 1` and back.

`export_info.json` beside `saved_model.pb` records the algorithm, step,
signature and shapes, and for data converted from DICOM or NIfTI the data's
windows (`window`: {"image": W} or {"A": W, "B": W}, W in modality units,
e.g. Hounsfield units) and conversion settings (`medical`), with the domain
of the inputs and outputs (`input_domain`, `output_domain`), so that users
can map back: `modality = low + (images + 1) / 2 * (high - low)` with the
output domain's window. A translation input is windowed as the conversion
did: `images = 2 * (clip(v, low, high) - low) / (high - low) - 1`, with the
input domain's window for a fixed `medical.window` (or `auto` of CT data,
whose window is in HU), otherwise (`percentile:`, `auto` of other data) with
the same percentiles of the input volume.
"""

import dataclasses
import json
import os
import shutil

import tensorflow as tf

import algorithms
from inference import sampling
from inference import volumes
from settings import required, setting

INFO_NAME = "export_info.json"


@dataclasses.dataclass(frozen=True)
class ExportConfig:
  """What `pipeline.export` does: each field is one of its flags (settings/)."""
  model_dir: str = required("Run directory of pipeline.train.")
  output: str = required("Directory to write the SavedModel to.")
  checkpoint: str | None = setting(None,
      "Checkpoint path, step, or best (--keep_best's; default: the latest).")
  direction: str | None = setting(None,
      "Translation models: the direction to export (default: the trained one; cyclegan and unit "
      "can export either).", choices=algorithms.DIRECTIONS)
  overwrite: bool = setting(False, "Replace an existing --output directory.")


def _pad_indices(size, stride):
  """Gather indices that pad an axis of `size` to a multiple of `stride`:
  reflection (numpy's 'reflect') when the padding is shorter than the axis,
  else repetition of the last pixel ('edge')."""
  i = tf.range(size + tf.math.floormod(-size, stride))
  return i, 2 * (size - 1) - i


def pad_to_stride(x, stride):
  """Pads [B, *spatial, C] (images [B, H, W, C], volumes [B, D, H, W, C]) at
  the end of each spatial axis to a multiple of `stride` (the numpy padding
  of `inference.volumes.pad_to_stride`, in graph ops): by reflection when
  every axis is longer than its padding, else by repeating the last voxel."""
  x = tf.convert_to_tensor(x)
  axes = range(1, x.shape.rank - 1)
  sizes = [tf.shape(x)[a] for a in axes]
  reflect = tf.reduce_all(tf.stack([tf.math.floormod(-s, stride) < s for s in sizes]))
  for axis, size in zip(axes, sizes):
    i, r = _pad_indices(size, stride)
    x = tf.gather(x, tf.where(i < size, i, tf.where(reflect, r, size - 1)), axis=axis)
  return x


class SamplingModule(tf.Module):
  """(z[, labels]) -> images, for a generator with the `(z, labels, training)` interface."""

  def __init__(self, generator, z_dim, conditional):
    super().__init__(name="generator_export")
    # The variables are tracked, not the Keras model: TensorFlow would also
    # trace the model's own default signature, which knows nothing of labels.
    self.weights = list(generator.weights)
    z_spec = tf.TensorSpec([None, z_dim], tf.float32, name="z")
    if conditional:
      def serve(z, labels):
        return {"images": generator(z, labels, training=False)}
      specs = [z_spec, tf.TensorSpec([None], tf.int32, name="labels")]
    else:
      def serve(z):
        return {"images": generator(z, None, training=False)}
      specs = [z_spec]
    self.serve = tf.function(serve, input_signature=specs)


class TranslationModule(tf.Module):
  """images -> images of the same size, padding to the stride inside the graph;
  volumes [B, D, H, W, C] alike with `rank=3`."""

  def __init__(self, translate, stride, channels, networks, rank=2):
    super().__init__(name="translation_export")
    self.weights = [w for n in networks for w in n.weights]  # As in SamplingModule.
    self.stride = stride

    def serve(images):
      spatial = tf.shape(images)[1:-1]
      out = translate(pad_to_stride(images, stride))
      size = tf.concat([[-1], spatial, [-1]], axis=0)
      return {"images": tf.slice(out, tf.zeros_like(size), size)}

    self.serve = tf.function(
        serve, input_signature=[tf.TensorSpec([None] * (rank + 1) + [channels], tf.float32,
                                              name="images")])


def export(algorithm, output, direction=None, step=None):
  """Writes `algorithm`'s generator to `output` as a SavedModel.

  Args:
    algorithm: a built algorithm (e.g. from `sampling.load_algorithm`).
    output: a directory (created; must not hold a SavedModel already).
    direction: translation algorithms: AtoB or BtoA (None: the trained one).
    step: recorded in export_info.json.

  Returns:
    The info dict written to export_info.json.

  Raises:
    ValueError: a direction this algorithm cannot translate.
  """
  algo = algorithm.config.algo
  info = {"algo": algo, "step": step, "range": [-1.0, 1.0], "signature": "serving_default"}
  if algorithm.inference == algorithms.TRANSLATION:
    direction, reverse = algorithm.translation_direction(direction)
    input_shape = algorithm.data.domain_shape(direction[0])
    channels, rank = input_shape[-1], len(input_shape) - 1
    output_shape = algorithm.data.domain_shape(direction[-1])
    module = TranslationModule(lambda x: algorithm.translate(x, reverse=reverse),
                               algorithm.stride, channels, algorithm.translation_networks(),
                               rank)
    info.update(kind=algorithm.inference, direction=direction, channels=channels,
                input_domain=direction[0], output_domain=direction[-1],
                stride=algorithm.stride,
                inputs={"images": f"[{', '.join(['None'] * (rank + 1))}, {channels}] float32 "
                                  "in [-1, 1]"},
                note="any size: padded to a multiple of the stride inside, cropped back")
    if volumes.is_volume_run(algorithm.data):
      info.update(patch_size=list(input_shape[:-1]), note=(
          "volumes [None, D, H, W, C]: trained on patches of patch_size, which it reproduces "
          "exactly; any size is padded to a multiple of the stride inside and cropped back, "
          "but a whole scan is best translated as pipeline.translate does, by Gaussian-"
          "blended sliding windows of patch_size (inference/sliding_window.py)"))
  else:
    output_shape = algorithm.data.shape
    if direction:
      raise ValueError(f"--direction applies to translation models, not {algo}")
    generator = algorithm.ema_generator or algorithm.generator
    num_classes = getattr(algorithm, "num_classes", 0)
    z_dim = algorithm.config.z_dim
    module = SamplingModule(generator, z_dim, bool(num_classes))
    inputs = {"z": f"[None, {z_dim}] float32 (standard normal)"}
    if num_classes:
      inputs["labels"] = f"[None] int32 in [0, {num_classes})"
    info.update(kind=algorithm.inference, z_dim=z_dim, num_classes=num_classes,
                output_domain=volumes.generated_domain(algorithm.data),
                generator="ema_generator" if algorithm.ema_generator is not None
                else "generator", inputs=inputs)
  info["output_shape"] = [None] + list(output_shape)
  info["window"] = algorithm.data.window  # None unless the data came from DICOM or NIfTI.
  info["medical"] = algorithm.data.medical
  if algorithm.data.window:
    info["to_modality"] = ("low + (images + 1) / 2 * (high - low), with the output domain's "
                           "window")
  tf.saved_model.save(module, output, signatures={"serving_default": module.serve})
  with open(os.path.join(output, INFO_NAME), "w", encoding="utf-8") as f:
    json.dump(info, f, indent=2, sort_keys=True)
    f.write("\n")
  return info


def run(config):
  """Loads the run in `config.model_dir` and exports its generator.

  Returns:
    The info dict of `export`.

  Raises:
    ValueError: not a run directory, no checkpoint, an existing output
      (without `overwrite`), or a bad direction.
  """
  if os.path.exists(os.path.join(config.output, "saved_model.pb")):
    if not config.overwrite:
      raise ValueError(f"--output {config.output!r} already holds a SavedModel; pass "
                       "--overwrite to replace it")
    shutil.rmtree(config.output)
  algorithm, step = sampling.load_algorithm(config.model_dir, config.checkpoint)
  return export(algorithm, config.output, config.direction, step)
