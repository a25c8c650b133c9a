"""Applying a trained translation model to a folder of images (`pipeline.translate`).

Every image is translated at its own size: the networks are fully
convolutional, so an image is padded (by reflection) to a multiple of the
network's stride, translated, and cropped back. Files that cannot be decoded
are skipped and listed; the others keep their names (and relative folders),
written as PNG in the input's bit depth (`photo.jpg` becomes `photo.png`).
"""

import dataclasses
import os

from absl import logging
import numpy as np
import tensorflow as tf

from algorithms import translation
from inference import sampling
from input import images as images_lib
from settings import required, setting


@dataclasses.dataclass(frozen=True)
class TranslateConfig:
  """What `pipeline.translate` does: each field is one of its flags (settings/)."""
  model_dir: str = required("Run directory of a pix2pix, cyclegan or unit run.")
  input: str = required("Folder of images to translate (searched recursively).")
  output: str = required("Folder for the translated PNGs (same relative names).")
  direction: str | None = setting(
      None, "Default: the direction the model was trained in. cyclegan and unit translate "
      "both ways; pix2pix only the trained way.", choices=("AtoB", "BtoA"))
  checkpoint: str | None = setting(
      None, "Checkpoint path, step, or best (--keep_best's; default: the latest).")


@dataclasses.dataclass
class TranslateResult:
  written: list  # output paths
  skipped: list  # (input path, reason)


def _pad_to(x, stride):
  """Reflect-pads [H, W, C] on the bottom/right to multiples of `stride`
  (edge-pads where the image is too small to reflect)."""
  h, w = x.shape[:2]
  ph, pw = -h % stride, -w % stride
  mode = "reflect" if ph < h and pw < w else "edge"
  return np.pad(x, ((0, ph), (0, pw), (0, 0)), mode=mode)


def run(config):
  """Translates every file of `config.input` into `config.output`.

  Returns:
    A `TranslateResult`.

  Raises:
    ValueError: not a translation run, a direction it cannot translate, a
      missing input folder, or an output folder inside the input.
  """
  if not os.path.isdir(config.input):
    raise ValueError(f"--input {config.input!r} is not a directory")
  src, dst = os.path.realpath(config.input), os.path.realpath(config.output)
  if dst == src or dst.startswith(src + os.sep):
    raise ValueError(f"--output {config.output!r} must not be inside --input")
  algorithm, step = sampling.load_algorithm(config.model_dir, config.checkpoint)
  if not isinstance(algorithm, translation.Translation):
    raise ValueError(f"{config.model_dir!r} holds a {algorithm.config.algo} run, not a "
                     "translation model (pix2pix, cyclegan, unit)")
  trained = algorithm.config.direction
  direction = config.direction or trained
  if direction not in ("AtoB", "BtoA"):
    raise ValueError(f"--direction must be AtoB or BtoA, got {direction!r}")
  reverse = direction != trained
  if reverse and algorithm.config.algo == "pix2pix":
    raise ValueError(f"this pix2pix model translates {trained} only; --direction={direction} "
                     "needs a model trained with that direction")
  channels = algorithm.image_shape[-1]
  stride = algorithm.stride
  fn = tf.function(lambda x: algorithm.translate(x, reverse=reverse), reduce_retracing=True)
  logging.info("Translating %s -> %s with %s (step %d, %s)", config.input, config.output,
               algorithm.config.algo, step, direction)
  result = TranslateResult([], [])
  names, ignored = images_lib.list_image_files(config.input)
  if ignored:
    logging.info("Ignoring %d non-image file(s) in %s", ignored, config.input)
  for path in (os.path.join(config.input, name) for name in names):
    try:
      arr = images_lib.read_file(path)
    except images_lib.BadImageError as e:
      logging.warning("Skipped %s: %s", path, e)
      result.skipped.append((path, str(e)))
      continue
    h, w = arr.shape[:2]
    bit_depth = 16 if arr.dtype == np.uint16 else 8
    spec = images_lib.ImageSpec(h, w, channels, bit_depth)
    x = images_lib.to_spec(arr, spec).astype(np.float32)
    max_value = 65535.0 if bit_depth == 16 else 255.0
    x = _pad_to(x / max_value * 2.0 - 1.0, stride)
    y = fn(tf.constant(x[None]))[0].numpy()[:h, :w]
    out = np.clip(np.round((y + 1.0) / 2.0 * max_value), 0, max_value).astype(spec.dtype)
    rel = os.path.splitext(os.path.relpath(path, config.input))[0] + ".png"
    target = os.path.join(config.output, rel)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as f:
      f.write(images_lib.encode(out, "png"))
    result.written.append(target)
  logging.info("Wrote %d image(s) to %s; skipped %d", len(result.written), config.output,
               len(result.skipped))
  return result
