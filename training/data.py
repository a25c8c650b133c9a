"""What the trainer learns from a converted dataset's manifest."""

import math
import os

import numpy as np

from algorithms import base
from input import manifest as manifest_lib


def describe(manifest, spec):
  """A `DataInfo` from a manifest (with its window and medical settings, for
  medical data)."""
  kind = manifest["kind"]
  feature = manifest_lib.FEATURES_BY_KIND[kind][0]
  shape = tuple(manifest["features"][feature]["shape"])
  names = manifest.get("label_names") or []
  if spec.startswith("builtin:"):
    name = spec.split(":", 1)[1]
  else:
    name = os.path.basename(os.path.normpath(spec if ":" not in spec
                                             else spec.split(":", 1)[1].split(",")[0]))
  return base.DataInfo(kind=kind, shape=shape, num_classes=len(names), name=name,
                       window=manifest.get("window"), medical=manifest.get("medical"))


def auto_shuffle_buffer(manifest):
  """About 64 MB of records, 1,000 to 10,000: the buffer is saved in every
  checkpoint (it is part of the input iterator's position)."""
  total = 0
  for f in manifest["features"].values():
    n = math.prod(f["shape"])
    total += n * (4 if f["dtype"] == "float32" else np.dtype(f["dtype"]).itemsize)
  return int(min(10_000, max(1_000, 64e6 // max(total, 1))))
