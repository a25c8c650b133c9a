"""Resolving `--data` to a converted TFRecord directory and describing it."""

import os

from input import convert
from input import manifest as manifest_lib
from input import sources
from training import algorithms


def resolve(spec, cache_dir=None, image_size=None):
  """Returns the directory of converted data for `--data`.

  Args:
    spec: a directory made by `pipeline.convert`, or a source `KIND:ARG`
      (`builtin:shapes`, `folder:DIR`, `tfds:NAME`, ...), which is converted
      into the cache on first use.
    cache_dir: where converted sources are cached.
    image_size: size to convert image sources to (None: the source's).

  Raises:
    ValueError: neither a dataset directory nor a known source kind.
  """
  kind, sep, _ = spec.partition(":")
  if sep and kind in sources.SOURCE_KINDS:
    return convert.ensure_converted(spec, cache_dir=cache_dir, image_size=image_size)
  if os.path.isdir(spec):
    return spec
  raise ValueError(f"--data {spec!r} is neither a dataset directory made by pipeline.convert "
                   f"nor a source KIND:ARG with KIND one of {', '.join(sources.SOURCE_KINDS)}")


def describe(manifest, spec, data_dir):
  """A `DataInfo` from a manifest."""
  kind = manifest["kind"]
  feature = manifest_lib.FEATURES_BY_KIND[kind][0]
  shape = tuple(manifest["features"][feature]["shape"])
  names = manifest.get("label_names") or []
  if spec.startswith("builtin:"):
    name = spec.split(":", 1)[1]
  else:
    name = os.path.basename(os.path.normpath(data_dir if ":" not in spec
                                             else spec.split(":", 1)[1].split(",")[0]))
  return algorithms.DataInfo(kind=kind, shape=shape, num_classes=len(names), name=name)
