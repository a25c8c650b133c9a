"""Applying a trained translation model to images, NIfTI volumes or DICOM
series (`pipeline.translate`).

A folder of images: every image is translated at its own size: the networks
are fully convolutional, so an image is padded (by reflection) to a multiple
of the network's stride, translated, and cropped back. Files that cannot be
decoded are skipped and listed; the others keep their names (and relative
folders), written as PNG in the input's bit depth (`photo.jpg` becomes
`photo.png`; `--format=png16`: always 16-bit).

A NIfTI file or a folder with NIfTI files, or a folder of DICOM files (found
by their content; `input_format`), from a run trained on DICOM or NIfTI data:
each volume is translated slice by slice along the run's slice axis, mapped
in with the source domain's window and back with the target domain's, each
slice resized (Lanczos, as the conversion resized) to the scale the model
was trained at, translated whole and resized back onto its own grid
(`inference.volumes`). A run trained on
data converted with --context_slices=K is given each slice with its K
neighbours on either side, stacked from the input volume as the conversion
stacked them (`input.medical.volume.context_indices`). NIfTI
files keep their relative names (a BIDS name takes the target's suffix,
`sub-01_T1w` -> `sub-01_T2w`: `--suffix`), shape, affine and header; DICOM series become
`series-<pseudonym>.nii.gz`, never DICOM, with the affine of the series'
image plane (`input.medical.geometry`). `--format=png16` writes a folder of
16-bit PNGs per volume instead. `window.json` in the output records the
windows used.

A run trained on volumes (`pipeline.convert --volumes`, 3-D patches) takes
each volume whole instead, windowed alike and ordered [D, H, W] as the
slices are, and resized to the scale the conversion gave the training
volumes (and back at the end): the model slides over it in patches of the
training size, `--overlap` apart, blended with Gaussian weights
(`inference.volume_translate`); the output is written as above.
"""

import dataclasses
import os

from absl import logging
import numpy as np
import tensorflow as tf

import algorithms
from inference import sampling
from inference import volume_translate
from inference import volumes
from input import images as images_lib
from settings import required, setting


KEEP_NAMES = "keep"  # --suffix's value that keeps the input's names.


@dataclasses.dataclass(frozen=True)
class TranslateConfig:
  """What `pipeline.translate` does: each field is one of its flags (settings/)."""
  model_dir: str = required("Run directory of a pix2pix, cyclegan or unit run.")
  input: str = required("Folder of images to translate (searched recursively), a NIfTI file, "
                        "a folder with NIfTI files, or a folder of DICOM files.")
  output: str = required("Folder for the translated files (same relative names, BIDS names with "
                         "the target's suffix (--suffix); DICOM series "
                         "as series-<pseudonym>).")
  direction: str | None = setting(
      None, "Default: the direction the model was trained in. cyclegan and unit translate "
      "both ways; pix2pix only the trained way.", choices=algorithms.DIRECTIONS)
  checkpoint: str | None = setting(
      None, "Checkpoint path, step, or best (--keep_best's; default: the latest).")
  format: str | None = setting(
      None, "NIfTI and DICOM inputs: nifti (the default: one NIfTI volume per input volume, in "
      "the target window's modality units) or png16 (a folder of 16-bit PNG slices per "
      "volume, codes of that window). Image folders: png16 writes 16-bit PNGs; by default "
      "each keeps its input's bit depth.", choices=volumes.VOLUME_FORMATS)
  suffix: str | None = setting(
      None, "NIfTI inputs with BIDS names: the suffix of the outputs' names, e.g. T2w "
      "(sub-01_T1w.nii.gz is written as sub-01_T2w.nii.gz; --pairs still matches it). Default: "
      f"the target domain's, when its training files share one; {KEEP_NAMES} keeps the "
      "input's names.")
  overlap: float | None = setting(
      None, "Runs trained on volumes (pipeline.convert --volumes): the fraction of a patch "
      "that neighbouring patches share as the model slides over a whole scan, in [0, 1) "
      f"(default {volume_translate.DEFAULT_OVERLAP}); patch outputs are blended with Gaussian "
      "weights. Refused for runs trained on slices.")


@dataclasses.dataclass
class TranslateResult:
  written: list  # output paths
  skipped: list  # (input path, reason)
  kind: str = "images"  # What --input held: images, nifti or dicom.


def _check_paths(config):
  """Refuses an output that would overwrite or nest in the input."""
  src, dst = os.path.realpath(config.input), os.path.realpath(config.output)
  if os.path.isfile(src):
    if dst == os.path.dirname(src):
      raise ValueError(f"--output {config.output!r} must not be the folder of --input")
  elif dst == src or dst.startswith(src + os.sep):
    raise ValueError(f"--output {config.output!r} must not be inside --input")


def run(config):
  """Translates every file of `config.input` into `config.output`.

  Returns:
    A `TranslateResult`.

  Raises:
    ValueError: not a translation run, a direction it cannot translate, a
      missing input, an output inside the input, NIfTI/DICOM input to a run
      whose data has no window, --format=nifti for a folder of images, or
      --overlap out of [0, 1) or for a run trained on slices.
  """
  if not os.path.exists(config.input):
    raise ValueError(f"--input {config.input!r} does not exist")
  _check_paths(config)
  algorithm, step = sampling.load_algorithm(config.model_dir, config.checkpoint)
  if algorithm.inference != algorithms.TRANSLATION:
    raise ValueError(f"{config.model_dir!r} holds a {algorithm.config.algo} run, not a "
                     f"translation model ({', '.join(algorithms.names(algorithms.TRANSLATION))})")
  volume_run = volumes.is_volume_run(algorithm.data)
  _check_overlap(config, volume_run)
  direction, reverse = algorithm.translation_direction(config.direction)
  channels = algorithm.data.domain_shape(direction[0])[-1]
  fn = tf.function(lambda x: algorithm.translate(x, reverse=reverse), reduce_retracing=True)
  kind = volumes.input_format(config.input, (algorithm.data.medical or {}).get("format"))
  if kind == "images" and config.format == "nifti":
    raise ValueError(f"--format=nifti is for NIfTI and DICOM inputs; {config.input!r} holds "
                     "images (use --format=png16 or leave it out)")
  if kind == "images" and algorithm.data.context_slices:
    raise ValueError(f"{config.model_dir!r} translates slices with their neighbours "
                     f"(--context_slices={algorithm.data.context_slices}), which images do not "
                     f"have; {config.input!r} holds images: give NIfTI volumes or DICOM series")
  if kind == "images" and volume_run:
    raise ValueError(f"{config.model_dir!r} translates volumes (trained on 3-D patches of "
                     f"{tuple(algorithm.data.shape)}); {config.input!r} holds images: give "
                     "NIfTI volumes or DICOM series")
  logging.info("Translating %s (%s) -> %s with %s (step %d, %s)", config.input, kind,
               config.output, algorithm.config.algo, step, direction)
  if kind == "images":
    result = _translate_images(config, fn, channels, algorithm.stride)
  else:
    if volume_run:
      translator = volume_translate.PatchTranslator(
          fn, algorithm.data, direction, channels,
          volume_translate.DEFAULT_OVERLAP if config.overlap is None else config.overlap)
    else:
      translator = volumes.VolumeTranslator(fn, algorithm.data, direction, channels,
                                            algorithm.stride)
    os.makedirs(config.output, exist_ok=True)
    fmt = config.format or "nifti"
    if kind == "nifti":
      written, skipped = volumes.translate_nifti(translator, config.input, config.output, fmt,
                                                 _suffix(config, algorithm.data, direction))
    else:
      written, skipped = volumes.translate_dicom(translator, config.input, config.output, fmt,
                                                 config.model_dir)
    volumes.write_window_json(config.output, translator.record(direction))
    result = TranslateResult(written, skipped, kind)
  logging.info("Wrote %d file(s) to %s; skipped %d", len(result.written), config.output,
               len(result.skipped))
  return result


def _suffix(config, data, direction):
  """The BIDS suffix of the outputs' names (None: the input's names): --suffix,
  else the target domain's recorded by the conversion (`bids_suffix`), so
  that a synthetic T2w is not named T1w."""
  if config.suffix:
    return None if config.suffix == KEEP_NAMES else config.suffix
  recorded = (data.medical or {}).get("bids_suffix") or {}
  return recorded.get(direction[-1]) or recorded.get("image")


def _check_overlap(config, volume_run):
  """Refuses an --overlap out of [0, 1), or given to a run of slices."""
  if config.overlap is None:
    return
  if not volume_run:
    raise ValueError(f"--overlap is for runs trained on volumes (pipeline.convert --volumes); "
                     f"{config.model_dir!r} was trained on slices, which are translated whole: "
                     "leave --overlap out")
  if not 0.0 <= config.overlap < 1.0:
    raise ValueError(f"--overlap must be in [0, 1), got {config.overlap}")


def _translate_images(config, fn, channels, stride):
  """A folder of images, each at its own size (see the module docstring)."""
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
    x = volumes.pad_to_stride(x / max_value * 2.0 - 1.0, stride)
    y = fn(tf.constant(x[None]))[0].numpy()[:h, :w]
    if config.format == "png16":
      out = volumes.to_codes16(y)
    else:
      out = np.clip(np.round((y + 1.0) / 2.0 * max_value), 0, max_value).astype(spec.dtype)
    rel = os.path.splitext(os.path.relpath(path, config.input))[0] + ".png"
    target = os.path.join(config.output, rel)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as f:
      f.write(images_lib.encode(out, "png"))
    result.written.append(target)
  return result
