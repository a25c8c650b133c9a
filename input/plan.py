"""Planning a conversion: what `pipeline.convert` will write, identical in
every task for the same flags (`input/convert.py` runs it).

The plan lists each split's items in a fixed order (sorted, then a seeded
shuffle so that classes mix across shards; `--holdout` moves whole patient
groups into `test`), resolves the image spec (flags win; otherwise file
headers are probed), cuts each split into contiguous shards and fingerprints
everything that determines the output. Every image feature has the spec's
size and depth; a feature that the source loads as a stack of gray slices
(`Source.slice_stacks`) has as many channels as the stack.
"""

import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import math
import os

from absl import logging
import numpy as np

from input import images
from input import manifest as manifest_lib
from input.medical import splits

# Exit codes of `pipeline.convert`.
EXIT_USAGE = 2  # Bad flags or source; nothing was written.
EXIT_INCOMPLETE = 1  # Too many skipped inputs, or shards missing at finalize.


class ConvertError(Exception):
  """A conversion that cannot proceed; `exit_code` says which kind."""

  def __init__(self, message, exit_code=EXIT_USAGE):
    super().__init__(message)
    self.exit_code = exit_code


@dataclasses.dataclass
class ShardJob:
  split: str
  index: int
  count: int
  file: str
  items: list
  fingerprint: str


def _hash(*parts):
  h = hashlib.sha256()
  for p in parts:
    h.update(p.encode() if isinstance(p, str) else p)
    h.update(b"\0")
  return h.hexdigest()


# ---------------------------------------------------------------------------
# Planning.


def _resolve_image_spec(source, items, config):
  """The ImageSpec every example is brought to, from flags or probed headers."""
  fixed = source.fixed_info()
  size = (config.image_size, config.image_size) if config.image_size else None
  channels = config.channels
  if (size is None or channels is None) and fixed is None:
    all_items = [it for split_items in items.values() for it in split_items]
    if source.streaming:  # Nothing to probe before its one pass.
      raise ConvertError(f"{source.spec!r} has images of varying size; pass --image_size")
    logging.info("Probing the headers of %d %s (pass --image_size and --channels "
                 "to skip this)", len(all_items), source.items_are)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
      infos = [i for i in pool.map(source.probe, all_items, chunksize=64) if i is not None]
    if not infos:
      raise ConvertError(f"no readable image in {source.spec!r}")
    if size is None:
      sizes = collections.Counter((i.height, i.width) for i in infos)
      if len(sizes) > 1:
        common = ", ".join(f"{w}x{h} ({n} files)" for (h, w), n in sizes.most_common(3))
        raise ConvertError(f"images in {source.spec!r} have {len(sizes)} different sizes "
                           f"(most common: {common}); pass --image_size=N to resize them "
                           "all to NxN (and --resize=crop|pad|stretch)")
      size = next(iter(sizes))
    if channels is None:
      channels = 1 if all(i.channels == 1 for i in infos) else 3
  elif fixed is not None:
    size = size or (fixed.height, fixed.width)
    channels = channels or fixed.channels
  bit_depth = config.bit_depth or source.default_bit_depth
  return images.ImageSpec(size[0], size[1], channels, bit_depth, config.resize)


def _features(kind, spec, stacks, config, vector_dim):
  if kind == "vector":
    return {"vector": {"shape": [vector_dim], "dtype": "float32"}}
  return {name: {"shape": spec.feature_shape(stacks.get(name)),
                 "dtype": np.dtype(spec.dtype).name, "encoding": config.encoding}
          for name in manifest_lib.FEATURES_BY_KIND[kind]}


def _example_bytes(features):
  total = 64  # key and framing
  for f in features.values():
    n = int(np.prod(f["shape"]))
    total += n * (4 if f["dtype"] == "float32" else np.dtype(f["dtype"]).itemsize)
  return total


class Plan:
  """What a conversion will write; identical in every task for the same flags."""

  def __init__(self, source, config, reuse=None):
    """
    Args:
      source: a `Source`.
      config: the `ConvertConfig`.
      reuse: a split file's contents (`splits.read_split_file`), or None.
    """
    self.source = source
    self.config = config
    items, pre_skipped = source.items()
    rng = np.random.default_rng(config.seed)
    for split in items:
      if not source.streaming:  # Shuffle so that classes mix across shards.
        order = rng.permutation(len(items[split]))
        items[split] = [items[split][i] for i in order]
      if config.max_examples:
        items[split] = items[split][:config.max_examples]
    self.holdout = self.split_groups = None
    if config.holdout or reuse is not None:
      try:
        items, self.holdout, self.split_groups = splits.holdout(
            items, config.holdout, config.split_by, config.seed,
            secret_ids=source.secret_ids(), reuse=reuse,
            ways_out=source.patient_ways_out)
      except splits.SplitError as e:
        raise ConvertError(str(e)) from None
      if config.split_file:
        self.holdout["split_file"] = os.path.abspath(config.split_file)
    items = source.finish_split(items)  # Its SourceError: `convert.run` reports it.
    if not any(items.values()):
      raise ConvertError(f"source {source.spec!r} holds no examples")
    self.kind = source.kind
    self.pre_skipped = pre_skipped
    self.spec = None
    self.stacks = source.slice_stacks()
    vector_dim = None
    if self.kind == "vector":
      vector_dim = source.vector_dim()
    else:
      # Whole volumes (`--volumes`): the source says their spec.
      self.spec = (source.example_spec(items, config)
                   or _resolve_image_spec(source, items, config))
      if self.stacks and self.spec.channels != 1:
        raise ConvertError(f"--context_slices stacks gray slices, but {source.spec!r} is "
                           f"converted to {self.spec.channels} channels (colour series, or "
                           "--channels=3); convert gray volumes with --channels=1")
    self.features = _features(self.kind, self.spec, self.stacks, config, vector_dim)
    self.label_names = source.label_names()
    self.num_inputs = sum(len(v) for v in items.values()) + len(pre_skipped)
    keys_digest = _hash(*[f"{s}:{it.key}" for s in sorted(items) for it in items[s]])
    counts = {}
    for split, split_items in items.items():
      n = len(split_items)
      if config.num_shards:
        count = config.num_shards
      else:
        target = config.target_shard_mb * 1e6
        count = max(config.min_shards, math.ceil(n * _example_bytes(self.features) / target))
      if count > n:
        logging.warning("Split %s has %d examples; writing %d shards instead of %d", split, n,
                        n, count)
        count = n
      counts[split] = count
    self.fingerprint = _hash(json.dumps({
        "source": source.spec, "kind": self.kind, "features": self.features,
        "resize": config.resize, "labels": config.labels, "label_names": self.label_names,
        "seed": config.seed, "max_examples": config.max_examples, "shards": counts,
        # How the split was made ("made") differs between the task that
        # writes a --split_file and the tasks that then reuse it; the split not.
        "holdout": (None if self.holdout is None else
                    {k: v for k, v in self.holdout.items() if k != "made"}),
        "min_foreground": config.min_foreground,
        "keys": keys_digest, "extra": source.extra_manifest(),
    }, sort_keys=True))
    self.jobs = []
    for split in sorted(items):
      split_items, count = items[split], counts[split]
      n = len(split_items)
      for i in range(count):
        chunk = split_items[i * n // count:(i + 1) * n // count]
        name = manifest_lib.shard_name(split, i, count)
        fp = _hash(self.fingerprint, name, *[it.key for it in chunk])
        self.jobs.append(ShardJob(split, i, count, name, chunk, fp))

  def to_json(self):
    return {
        "fingerprint": self.fingerprint,
        "kind": self.kind,
        "features": self.features,
        "label_names": self.label_names,
        "num_inputs": self.num_inputs,
        "pre_skipped": [dataclasses.asdict(s) for s in self.pre_skipped],
        "shards": [{"split": j.split, "file": j.file, "num_items": len(j.items),
                    "fingerprint": j.fingerprint} for j in self.jobs],
        "source": self.config.source,
        "command_line": self.config.command_line,
        "config": dataclasses.asdict(self.config),
        "extra": self.source.extra_manifest(),
        "holdout": self.holdout,
    }

  def jobs_for_task(self, task_index, num_tasks):
    n = len(self.jobs)
    return self.jobs[task_index * n // num_tasks:(task_index + 1) * n // num_tasks]
