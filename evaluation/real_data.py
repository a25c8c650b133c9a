"""The real data of `pipeline.evaluate`: which converted data, split and
feature are compared (`resolve_real`, which converts a source on first use),
and their examples as [-1, 1] batches (`real_batches`)."""

import dataclasses
import hashlib
import os

from absl import logging

from input import cache
from input import manifest as manifest_lib
from input import reader


@dataclasses.dataclass(frozen=True)
class Real:
  """Which real examples are compared: a split and feature of converted data."""
  data_dir: str
  manifest: dict
  split: str
  feature: str  # image | image_b | vector
  count: int  # examples that will be read

  @property
  def is_vector(self):
    return self.feature == "vector"

  @property
  def shape(self):
    return tuple(self.manifest["features"][self.feature]["shape"])

  @property
  def max_value(self):
    if self.is_vector:
      return None
    return 255.0 if self.manifest["features"][self.feature]["dtype"] == "uint8" else 65535.0

  @property
  def manifest_sha256(self):
    with open(os.path.join(self.data_dir, manifest_lib.MANIFEST_NAME), "rb") as f:
      return hashlib.sha256(f.read()).hexdigest()


def resolve_real(config):
  """The real data's directory, split and feature; converts sources on first use.

  Raises:
    ValueError: unknown data, a split it lacks, or an unpaired split that
      names no domain.
  """
  spec = config.real
  data_dir = cache.resolve(spec, cache_dir=config.data_cache, image_size=config.image_size,
                           flag="--real")
  manifest = manifest_lib.load(data_dir)
  split = config.real_split
  if manifest["kind"] == "unpaired" and split not in manifest["splits"]:
    raise ValueError(f"{spec!r} is unpaired data: name one domain with --real_split (one of "
                     f"{', '.join(sorted(manifest['splits']))})")
  if split not in manifest["splits"]:
    raise ValueError(f"{spec!r} has no split {split!r}; it has "
                     f"{', '.join(sorted(manifest['splits']))}")
  feature = {"image": "image", "unpaired": "image", "paired": "image_b",
             "vector": "vector"}[manifest["kind"]]
  available = manifest["splits"][split]["num_examples"]
  count = available if not config.num_real else min(config.num_real, available)
  if config.num_real and available < config.num_real:
    logging.warning("--num_real=%d but split %s of %s has %d examples; using them all",
                    config.num_real, split, data_dir, available)
  return Real(data_dir, manifest, split, feature, count)


def real_batches(real, batch_size):
  ds = reader.make_dataset(reader.ReaderConfig(
      real.data_dir, split=real.split, shuffle_buffer=0, repeat=False, drop_remainder=False,
      deterministic=True), batch_size)
  left = real.count
  for batch in ds.as_numpy_iterator():
    x = batch[real.feature][:left]
    left -= len(x)
    yield x
    if left <= 0:
      return


def whole_split(real, split):
  """`real` reading every example of `split` (whatever `--num_real` says)."""
  return dataclasses.replace(real, split=split,
                             count=real.manifest["splits"][split]["num_examples"])
