"""Held-out pairs of volumes for paired fidelity (`evaluation.paired_data.
HeldOutPairs` of data converted with `pipeline.convert --volumes`).

Paired fidelity scores whole volumes, one per held-out patient (pair):

- whole-volume records (no `--patch_size`): each held-out record is one
  pair's volumes [D, H, W, 1];
- paired 3-D patches (`--patch_size=N`): the held-out split holds tiles
  that cover each held-out volume (`input.medical.tiles`, corners in the
  manifest's `patch_corners`), reassembled here bit for bit. Data converted
  before the held-out split was tiled holds random patches there, which
  cannot be put back together: it is refused, naming the way out.

A volume is translated as `pipeline.translate` translates a scan of a run
trained on volumes (`inference.volume_translate`): blended sliding windows
(`inference.sliding_window`) of the training patch (the data's record shape:
N^3 patches, or the whole volume for a run trained on whole volumes), with
the same overlap (0.5), Gaussian blending and patches per call.

The baselines are fitted on the `train` split's records as they are: whole
volumes, or random patches, each inside its own auto mask.
"""

import collections

import numpy as np
import tensorflow as tf

from inference import sliding_window
from inference import volume_translate
from input import reader
from input.medical import tiles as tiles_lib

__all__ = ["describe", "held_out", "is_volume_data", "patch_size", "training_pairs", "translate"]


def is_volume_data(manifest):
  """Whether converted data holds volumes (`--volumes`) rather than slices."""
  return bool((manifest.get("medical") or {}).get("volumes"))


def patch_size(manifest):
  """The patch the data's runs train on: its records' (D, H, W)."""
  return tuple(int(s) for s in manifest["features"]["image_a"]["shape"][:3])


def _is_patches(manifest):
  return manifest["medical"].get("patch_size") is not None


def _records(data_dir, split, batch_size):
  """(key, A codes [D, H, W, 1], B codes) of each record of a split, in shard order."""
  ds = reader.make_dataset(reader.ReaderConfig(
      data_dir, split=split, shuffle_buffer=0, repeat=False, drop_remainder=False,
      deterministic=True, with_keys=True, normalize=False), batch_size)
  for batch in ds.as_numpy_iterator():
    for key, a, b in zip(batch["key"], batch["image_a"], batch["image_b"]):
      yield key.decode(), a, b


def _pair_of(key):
  """The pair id of a patch or tile key `<pair id>/p<k>` or `<pair id>/t<k>`."""
  return key.rpartition("/")[0]


def held_out(data_dir, manifest, batch_size):
  """{pair id: (A codes, B codes)}, each [D, H, W, 1], of the whole held-out
  volumes (split `test`), sorted by pair id.

  Raises:
    ValueError: patch data whose held-out split is not tiled.
  """
  if not _is_patches(manifest):
    return dict(sorted((key, (a, b)) for key, a, b in _records(data_dir, "test", batch_size)))
  if manifest["medical"].get("test_split") != "tiles":
    raise ValueError(f"{data_dir!r} holds random 3-D patches in its held-out split, which "
                     "cannot be put back into whole volumes: convert it again with this "
                     "version's pipeline.convert (it stores the held-out split as tiles)")
  corners = manifest["patch_corners"]
  by_pair = collections.defaultdict(list)
  for key, a, b in _records(data_dir, "test", batch_size):
    by_pair[_pair_of(key)].append((corners[key], a, b))
  out = {}
  for pid, found in sorted(by_pair.items()):
    where = [c for c, _, _ in found]
    out[pid] = tuple(tiles_lib.assemble(np.stack([t[i] for t in found]), where) for i in (1, 2))
  return out


def training_pairs(data_dir, manifest, batch_size):
  """(pair id, (A codes, B codes)) of each `train` record (a whole volume
  or a random patch)."""
  patches = _is_patches(manifest)
  for key, a, b in _records(data_dir, "train", batch_size):
    yield (_pair_of(key) if patches else key), (a, b)


def translate(model_input, fn, patch):
  """One volume through a 3-D translation model by blended sliding windows.

  Args:
    model_input: [D, H, W, C] in [-1, 1].
    fn: [n, *patch, C] in [-1, 1] -> [n, *patch, C_out] (a tensor or array).
    patch: (P_d, P_h, P_w), the training patch.

  Returns:
    float32 [D, H, W], the output's channels averaged (as the 2-D path).
  """
  y = sliding_window.sliding_window(
      model_input, lambda p: fn(tf.constant(p)), patch, volume_translate.DEFAULT_OVERLAP,
      volume_translate.PATCH_BATCH, volume_translate.BLENDING)
  return y.mean(axis=-1)


def describe(manifest):
  """How the held-out volumes were read and translated, for the protocol."""
  patch = "x".join(map(str, patch_size(manifest)))
  read = ("tiles reassembled into whole volumes" if _is_patches(manifest) else
          "whole volumes as converted")
  return (f"{read}; translated by blended sliding windows of {patch} (the training patch), "
          f"overlap {volume_translate.DEFAULT_OVERLAP:g}, {volume_translate.BLENDING} "
          "blending (as pipeline.translate)")
