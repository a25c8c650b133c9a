"""Writing one shard: the part of a conversion that runs in worker processes
(`input/convert.py` plans and finalizes).

Each shard is written to a temporary name, fsynced, then renamed; a sidecar
`.convert/<shard>.json` records its sha256, counts and skipped inputs, so a
re-run keeps every shard whose sidecar matches the plan and whose file matches
the recorded sha256 (`shard_complete`).
"""

import collections
import hashlib
import json
import os

import numpy as np

from input import images
from input import manifest as manifest_lib

STATE_DIR = ".convert"  # Inside the output: the plan and the shards' sidecars.


def sha256_file(path):
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()



def serialize_example(kind, key, arrays, label, encoding):
  """One tf.train.Example; image `arrays` are already brought to the spec.

  The record has a `label` feature only when `label` is not None.
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  feats = {"key": tf.train.Feature(bytes_list=tf.train.BytesList(value=[key.encode()]))}
  if kind == "vector":
    v = np.asarray(arrays["vector"], np.float32).reshape(-1)
    feats["vector"] = tf.train.Feature(float_list=tf.train.FloatList(value=v.tolist()))
  else:
    for name in manifest_lib.FEATURES_BY_KIND[kind]:
      data = images.encode(arrays[name], encoding)
      feats[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[data]))
  if label is not None:
    feats["label"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))
  return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString(
      deterministic=True)


class ShardWriter:
  """Writes one shard to a temporary file and commits it with its sidecar."""

  def __init__(self, out_dir, job, kind, spec, encoding, label_names, min_foreground=0.0,
               stacks=None):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    self.out_dir, self.job, self.kind, self.spec = out_dir, job, kind, spec
    self.stacks = stacks or {}  # Feature -> N: stacks of N gray slices (`Plan.stacks`).
    self.encoding, self.label_names = encoding, label_names
    self.min_foreground = min_foreground
    self.below_min_foreground = 0
    self.windows = {}
    self.corners = {}  # key -> [d, h, w]: the corners of 3-D patches.
    self.tmp = os.path.join(out_dir, f".{job.file}.tmp-{os.getpid()}")
    self.writer = tf.io.TFRecordWriter(self.tmp)
    self.num_records = 0
    self.skipped = []
    self.label_counts = collections.Counter()

  def add(self, key, example, label=None):
    """Writes one `Example` (whose own label, if any, wins over `label`)."""
    arrays = example.arrays
    if example.label is not None:  # Generated and TFDS examples carry their own.
      label = int(example.label)
    try:
      if (label is not None and self.label_names is not None
          and not 0 <= label < len(self.label_names)):
        raise images.BadImageError(f"label {label} outside 0..{len(self.label_names) - 1}")
      if self.kind != "vector":
        arrays = {k: self.spec.fit(v, stack=k in self.stacks) for k, v in arrays.items()}
        # A stack's own slice (its centre) decides, so that a conversion with
        # context keeps the slices that one without it keeps.
        if self.min_foreground and any(
            images.foreground_fraction(v[..., self.stacks[k] // 2] if k in self.stacks else v)
            < self.min_foreground for k, v in arrays.items()):
          self.below_min_foreground += 1
          return
      record = serialize_example(self.kind, key, arrays, label, self.encoding)
    except images.BadImageError as e:
      self.skipped.append({"key": key, "reason": str(e)})
      return
    self.windows.update({vid: w.to_json() for vid, w in example.windows.items()})
    if example.corner is not None:
      self.corners[key] = [int(c) for c in example.corner]
    self.writer.write(record)
    self.num_records += 1
    if label is not None:
      self.label_counts[self.label_names[label]] += 1

  def commit(self):
    self.writer.flush()
    self.writer.close()
    with open(self.tmp, "rb") as f:
      os.fsync(f.fileno())
    final = os.path.join(self.out_dir, self.job.file)
    record = {
        "file": self.job.file,
        "split": self.job.split,
        "fingerprint": self.job.fingerprint,
        "num_records": self.num_records,
        "sha256": sha256_file(self.tmp),
        "bytes": os.path.getsize(self.tmp),
        "label_counts": dict(sorted(self.label_counts.items())),
        "skipped": self.skipped,
        "below_min_foreground": self.below_min_foreground,
        "windows": dict(sorted(self.windows.items())),
    }
    if self.corners:  # Only paired 3-D patches: other sidecars stay as they were.
      record["patch_corners"] = dict(sorted(self.corners.items()))
    os.replace(self.tmp, final)
    manifest_lib.write_json_atomic(sidecar_path(self.out_dir, self.job.file), record)
    return record


def sidecar_path(out_dir, file):
  return os.path.join(out_dir, STATE_DIR, file + ".json")


def write_indexed_shard(source, job, kind, spec, encoding, label_names, out_dir,
                        min_foreground=0.0, stacks=None):
  """Worker entry point: loads each item of `job` and writes the shard.

  Items are written in `source.load_order` (for volumes, the slices of one
  volume together, so that it is read once).
  """
  w = ShardWriter(out_dir, job, kind, spec, encoding, label_names, min_foreground, stacks)
  for item in source.load_order(job.items):
    try:
      example = source.load(item)
    except images.BadImageError as e:
      w.skipped.append({"key": item.key, "reason": str(e)})
      continue
    w.add(item.key, example, item.label)
  return w.commit()


def write_streaming(source, plan, todo, out_dir, log_progress):
  """Writes the `todo` shards of a streaming source in one ordered pass."""
  by_split = collections.defaultdict(list)
  for job in todo:
    by_split[job.split].append(job)
  for split, jobs in by_split.items():
    # Example position -> shard job, for the shards that need writing.
    all_jobs = [j for j in plan.jobs if j.split == split]
    bounds, start = [], 0
    for j in all_jobs:
      bounds.append((start, start + len(j.items), j))
      start += len(j.items)
    wanted = {id(j) for j in jobs}
    it = iter(bounds)
    lo, hi, job = next(it)
    writer = None
    for pos, ex in enumerate(source.stream(split)):
      while pos >= hi:
        if writer is not None:
          log_progress(writer.commit())
          writer = None
        nxt = next(it, None)
        if nxt is None:
          break
        lo, hi, job = nxt
      if pos >= hi:
        break
      if id(job) not in wanted:
        continue
      if writer is None:
        writer = ShardWriter(out_dir, job, plan.kind, plan.spec, plan.config.encoding,
                              plan.label_names, plan.config.min_foreground, plan.stacks)
      writer.add(f"{split}/{pos}", ex)
    if writer is not None:
      log_progress(writer.commit())



def remove_if_exists(path):
  try:
    os.remove(path)
  except FileNotFoundError:
    pass


def shard_complete(out_dir, file, fingerprint, verify_sha=True):
  """True when the shard and its sidecar exist and agree with the plan."""
  path = os.path.join(out_dir, file)
  side = sidecar_path(out_dir, file)
  if not (os.path.isfile(path) and os.path.isfile(side)):
    return False
  with open(side, encoding="utf-8") as f:
    record = json.load(f)
  if record.get("fingerprint") != fingerprint or os.path.getsize(path) != record.get("bytes"):
    return False
  return not verify_sha or sha256_file(path) == record.get("sha256")


def remove_stale_tmp(out_dir, files):
  prefixes = tuple(f".{f}.tmp-" for f in files)
  for name in os.listdir(out_dir):
    if name.startswith(prefixes):
      remove_if_exists(os.path.join(out_dir, name))
