"""Converting a source into sharded TFRecords: the library behind `pipeline.convert`.

    from input import convert
    convert.run(convert.ConvertConfig(source="folder:/data/xray", output="/data/xray-tfr"))

How a conversion proceeds:
1. The source lists its examples per split in a fixed order (sorted paths,
   then a seeded shuffle so that classes mix across shards).
2. The image spec is resolved: flags win; otherwise file headers are probed
   (one size must be common to all, the channels are 1 only if every image is
   gray).
3. Each split is cut into contiguous shards; the plan, with a fingerprint of
   everything that determines the output, goes to `OUTPUT/.convert/plan.json`.
4. This task's shards are written in parallel worker processes
   (`input/shards.py`), each to a temporary name, fsynced, then renamed; a
   sidecar `.convert/<shard>.json` records its sha256, counts and skipped
   inputs. A re-run keeps every shard whose sidecar matches the plan and whose
   file matches the recorded sha256.
5. Finalizing (automatic with one task, `--finalize` with several) checks that
   every planned shard is present and complete and merges the sidecars into
   `manifest.json`.

Output is deterministic: the same source and flags give byte-identical shards
whatever the number of workers or tasks.
"""

import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import time

from absl import logging
import numpy as np

from input import images
from input import manifest as manifest_lib
from input import shards
from input import sources
from settings import required, setting

_PLAN_NAME = "plan.json"

# Exit codes of `pipeline.convert`.
EXIT_USAGE = 2  # Bad flags or source; nothing was written.
EXIT_INCOMPLETE = 1  # Too many skipped inputs, or shards missing at finalize.


class ConvertError(Exception):
  """A conversion that cannot proceed; `exit_code` says which kind."""

  def __init__(self, message, exit_code=EXIT_USAGE):
    super().__init__(message)
    self.exit_code = exit_code


@dataclasses.dataclass(frozen=True)
class ConvertConfig:
  """Everything that defines a conversion: each field but `command_line` is a
  flag of `pipeline.convert` (settings/: default and help written here only)."""
  output: str = required("Output directory for shards and manifest.json.")
  source: str | None = setting(  # None only with --finalize.
      None,
      "What to convert: folder:DIR | tfds:NAME[:SPLIT] | npz:FILE | paired:DIR_A,DIR_B | "
      "paired:DIR (A|B side by side) | unpaired:DIR_A,DIR_B | builtin:NAME (shapes, ring2d, "
      "grid2d, shapes_paired, shapes_unpaired).")
  num_shards: int | None = setting(None,
      "Shards per split. Default: about --target_shard_mb per shard, never fewer than "
      "--min_shards (nor more than there are examples).")
  min_shards: int = setting(16,
      "Least number of shards per split, so that many workers can shard by file.")
  target_shard_mb: float = setting(150.0, "Target shard size in MB for --num_shards.")
  image_size: int | None = setting(None,
      "Output size NxN. Default: keep the source's size (all images must then share one size). "
      "For builtin: the size to draw at (32).")
  channels: int | None = setting(None,
      "Output channels. Default: the source's (1 if every image is gray).", choices=(1, 3))
  resize: str = setting("crop",
      "Fitting images of another aspect ratio: center-crop, pad with black to the target aspect, "
      "or stretch.", choices=images.RESIZE_MODES)
  bit_depth: int = setting(8,
      "Stored bit depth; 16 keeps 16-bit PNGs (medical images) exact.", choices=(8, 16))
  encoding: str = setting("raw",
      "raw: fastest to read; png: lossless and smaller on disk.", choices=images.ENCODINGS)
  labels: str = setting("auto",
      "folder: labels from first-level subfolder names (auto: when every image is in one).",
      choices=["auto", "subfolder", "none"])
  num_workers: int | None = setting(None, "Parallel writer processes. Default: the CPUs available.")
  overwrite: bool = setting(False, "Start over: rewrite every shard even if complete ones exist.")
  num_tasks: int = setting(1,
      "Split the conversion over this many tasks (Slurm array, Kubernetes Indexed Job); each "
      "writes a disjoint range of shards.")
  task_index: int = setting(0, "This task's index in [0, --num_tasks).")
  finalize: bool = setting(False, "After all tasks: check every shard and write manifest.json.")
  max_skip_fraction: float = setting(0.01,
      "Fail (exit 1) when more than this fraction of inputs was skipped.")
  max_examples: int | None = setting(None, "Convert at most this many examples per split.")
  seed: int = setting(0, "Seed of the shard order shuffle and of builtin data generation.")
  tfds_data_dir: str | None = setting(None, "tensorflow-datasets data_dir.")
  command_line: str = ""  # Filled in by the binary: recorded in the manifest.

  def validate(self):
    """Raises ConvertError naming the first bad value."""
    checks = [
        (self.output, "--output is required"),
        (self.finalize or self.source, "--source is required"),
        (self.num_shards is None or self.num_shards >= 1,
         f"--num_shards must be >= 1, got {self.num_shards}"),
        (self.min_shards >= 1, f"--min_shards must be >= 1, got {self.min_shards}"),
        (self.image_size is None or self.image_size >= 1,
         f"--image_size must be >= 1, got {self.image_size}"),
        (self.channels in (None, 1, 3), f"--channels must be 1 or 3, got {self.channels}"),
        (self.resize in images.RESIZE_MODES,
         f"--resize must be one of {', '.join(images.RESIZE_MODES)}, got {self.resize!r}"),
        (self.bit_depth in (8, 16), f"--bit_depth must be 8 or 16, got {self.bit_depth}"),
        (self.encoding in images.ENCODINGS,
         f"--encoding must be one of {', '.join(images.ENCODINGS)}, got {self.encoding!r}"),
        (self.labels in ("auto", "subfolder", "none"),
         f"--labels must be auto, subfolder or none, got {self.labels!r}"),
        (self.num_workers is None or self.num_workers >= 1,
         f"--num_workers must be >= 1, got {self.num_workers}"),
        (self.num_tasks >= 1, f"--num_tasks must be >= 1, got {self.num_tasks}"),
        (0 <= self.task_index < self.num_tasks,
         f"--task_index must be in [0, {self.num_tasks}), got {self.task_index}"),
        (0.0 <= self.max_skip_fraction <= 1.0,
         f"--max_skip_fraction must be in [0, 1], got {self.max_skip_fraction}"),
        (self.max_examples is None or self.max_examples >= 1,
         f"--max_examples must be >= 1, got {self.max_examples}"),
    ]
    for ok, message in checks:
      if not ok:
        raise ConvertError(message)


@dataclasses.dataclass
class _ShardJob:
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
    if isinstance(source, sources.TfdsSource):
      raise ConvertError(f"tfds dataset {source.name!r} has images of varying size; "
                         "pass --image_size")
    logging.info("Probing the headers of %d files (pass --image_size and --channels "
                 "to skip this)", len(all_items))
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
  return images.ImageSpec(size[0], size[1], channels, config.bit_depth, config.resize)


def _features(kind, spec, config, vector_dim):
  if kind == "vector":
    return {"vector": {"shape": [vector_dim], "dtype": "float32"}}
  return {name: {"shape": list(spec.shape), "dtype": np.dtype(spec.dtype).name,
                 "encoding": config.encoding}
          for name in manifest_lib.FEATURES_BY_KIND[kind]}


def _example_bytes(features):
  total = 64  # key and framing
  for f in features.values():
    n = int(np.prod(f["shape"]))
    total += n * (4 if f["dtype"] == "float32" else np.dtype(f["dtype"]).itemsize)
  return total


class _Plan:
  """What a conversion will write; identical in every task for the same flags."""

  def __init__(self, source, config):
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
    if not any(items.values()):
      raise ConvertError(f"source {source.spec!r} holds no examples")
    self.kind = source.kind
    self.pre_skipped = pre_skipped
    self.spec = None
    vector_dim = None
    if self.kind == "vector":
      vector_dim = source.vector_dim()
    else:
      self.spec = _resolve_image_spec(source, items, config)
    self.features = _features(self.kind, self.spec, config, vector_dim)
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
        self.jobs.append(_ShardJob(split, i, count, name, chunk, fp))

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
    }

  def jobs_for_task(self, task_index, num_tasks):
    n = len(self.jobs)
    return self.jobs[task_index * n // num_tasks:(task_index + 1) * n // num_tasks]


# ---------------------------------------------------------------------------
# The output directory.


def _is_ours(name):
  return (manifest_lib.is_shard_name(name)
          or name in (manifest_lib.MANIFEST_NAME, shards.STATE_DIR)
          or (name.startswith(".") and ".tmp-" in name))


def _check_output(config, source):
  out = os.path.realpath(config.output)
  for d in source.source_dirs():
    d = os.path.realpath(d)
    if out == d or out.startswith(d + os.sep):
      raise ConvertError(f"--output {config.output!r} is inside the source folder {d!r}; "
                         "choose a directory outside it")
  if os.path.exists(out) and not os.path.isdir(out):
    raise ConvertError(f"--output {config.output!r} exists and is not a directory")
  if os.path.isdir(out):
    foreign = sorted(n for n in os.listdir(out) if not _is_ours(n))
    if foreign:
      raise ConvertError(f"--output {config.output!r} holds files that are not from a "
                         f"conversion (e.g. {foreign[0]!r}); choose an empty or new directory")


def _read_plan(out_dir):
  path = os.path.join(out_dir, shards.STATE_DIR, _PLAN_NAME)
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _prepare_output(config, plan):
  out = config.output
  old = _read_plan(out)
  if old is not None and old["fingerprint"] != plan.fingerprint and not config.overwrite:
    raise ConvertError(f"--output {out!r} holds a different conversion (of "
                       f"{old.get('source')!r} with other settings); pass --overwrite to "
                       "replace it, or choose another directory")
  os.makedirs(os.path.join(out, shards.STATE_DIR), exist_ok=True)
  if config.overwrite:
    mine = {j.file for j in plan.jobs_for_task(config.task_index, config.num_tasks)}
    for name in os.listdir(out):
      # With several tasks, each removes only its own shards: others may be running.
      if config.num_tasks == 1 or name in mine:
        if manifest_lib.is_shard_name(name):
          os.remove(os.path.join(out, name))
          shards.remove_if_exists(shards.sidecar_path(out, name))
    if config.num_tasks == 1:
      shards.remove_if_exists(os.path.join(out, manifest_lib.MANIFEST_NAME))
      for name in os.listdir(os.path.join(out, shards.STATE_DIR)):
        shards.remove_if_exists(os.path.join(out, shards.STATE_DIR, name))
  manifest_lib.write_json_atomic(os.path.join(out, shards.STATE_DIR, _PLAN_NAME),
                                 plan.to_json())


# ---------------------------------------------------------------------------
# Entry points.


def _default_workers():
  try:
    return max(1, len(os.sched_getaffinity(0)))
  except AttributeError:
    return max(1, os.cpu_count() or 1)


def run(config):
  """Converts `config.source` into sharded TFRecords under `config.output`.

  Returns:
    The manifest (a dict) when this call finished the conversion, or None for
    one task of several (run again with `finalize=True` when all are done).

  Raises:
    ConvertError: bad flags or source (exit_code 2, nothing written), or an
      incomplete result (exit_code 1: too many skipped inputs, missing shards).
  """
  config.validate()
  if config.finalize:
    return finalize(config.output, config.max_skip_fraction)
  try:
    source = sources.parse_source(config.source, labels=config.labels, seed=config.seed,
                                  image_size=config.image_size,
                                  tfds_data_dir=config.tfds_data_dir)
    _check_output(config, source)
    plan = _Plan(source, config)
  except sources.SourceError as e:
    raise ConvertError(str(e)) from None
  _prepare_output(config, plan)
  out = config.output
  mine = plan.jobs_for_task(config.task_index, config.num_tasks)
  shards.remove_stale_tmp(out, [j.file for j in mine])
  todo = [j for j in mine if not (not config.overwrite and
                                  shards.shard_complete(out, j.file, j.fingerprint))]
  spec_text = (f"{plan.spec.height}x{plan.spec.width}x{plan.spec.channels} "
               f"{plan.spec.bit_depth}-bit {config.encoding}" if plan.spec else "vectors")
  logging.info("Converting %s -> %s: kind %s, %s, %d inputs, %d shards in all; task %d/%d "
               "writes %d shards (%d already complete)", config.source, out, plan.kind,
               spec_text, plan.num_inputs, len(plan.jobs), config.task_index, config.num_tasks,
               len(todo), len(mine) - len(todo))
  start = time.time()
  done = [0, 0]

  def log_progress(record):
    done[0] += 1
    done[1] += record["num_records"]
    rate = done[1] / max(time.time() - start, 1e-9)
    logging.info("[%d/%d] %s: %d records, %d skipped (%.0f examples/s)", done[0], len(todo),
                 record["file"], record["num_records"], len(record["skipped"]), rate)

  if source.streaming:
    shards.write_streaming(source, plan, todo, out, log_progress)
  else:
    workers = min(config.num_workers or _default_workers(), max(1, len(todo)))
    args = (plan.kind, plan.spec, config.encoding, plan.label_names, out)
    if workers == 1:
      for job in todo:
        log_progress(shards.write_indexed_shard(source, job, *args))
    else:
      ctx = multiprocessing.get_context("spawn")  # fork is unsafe once TF is loaded.
      with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        futures = [pool.submit(shards.write_indexed_shard, source, job, *args) for job in todo]
        try:
          for f in concurrent.futures.as_completed(futures):
            log_progress(f.result())
        except BaseException:
          pool.shutdown(wait=True, cancel_futures=True)
          raise
  if config.num_tasks > 1:
    logging.info("Task %d of %d done. When every task is done, run the same command with "
                 "--finalize.", config.task_index, config.num_tasks)
    return None
  return finalize(out, config.max_skip_fraction)


def finalize(out_dir, max_skip_fraction=0.01):
  """Checks that every planned shard is complete and writes `manifest.json`.

  Raises:
    ConvertError: no plan (exit 2), missing or incomplete shards (exit 1,
      listing them), or more skipped inputs than `max_skip_fraction` (exit 1,
      after the manifest is written so the skipped files can be inspected).
  """
  plan = _read_plan(out_dir)
  if plan is None:
    raise ConvertError(f"{out_dir!r} holds no conversion plan; run the conversion tasks first")
  missing, records, owners = [], [], set()
  num_tasks = plan["config"]["num_tasks"]
  for i, shard in enumerate(plan["shards"]):
    # The sha256 was taken when the shard was committed; here size is enough.
    if not shards.shard_complete(out_dir, shard["file"], shard["fingerprint"], verify_sha=False):
      missing.append(shard["file"])
      owners.add(next(t for t in range(num_tasks)
                      if i < (t + 1) * len(plan["shards"]) // num_tasks))
      continue
    with open(shards.sidecar_path(out_dir, shard["file"]), encoding="utf-8") as f:
      records.append(json.load(f))
  if missing:
    raise ConvertError(f"{len(missing)} of {len(plan['shards'])} shards are missing or "
                       f"incomplete (first: {', '.join(missing[:5])}); re-run tasks "
                       f"{sorted(owners)} of {num_tasks}, then finalize again", EXIT_INCOMPLETE)
  planned = {s["file"] for s in plan["shards"]}
  for name in os.listdir(out_dir):
    if manifest_lib.is_shard_name(name) and name not in planned:
      logging.warning("Removing stale shard %s from an earlier conversion", name)
      os.remove(os.path.join(out_dir, name))
      shards.remove_if_exists(shards.sidecar_path(out_dir, name))
  splits = {}
  skipped = list(plan["pre_skipped"])
  for r in records:
    s = splits.setdefault(r["split"], {"num_examples": 0, "label_counts": collections.Counter(),
                                       "shards": []})
    s["num_examples"] += r["num_records"]
    s["label_counts"].update(r["label_counts"])
    s["shards"].append({k: r[k] for k in ("file", "num_records", "sha256", "bytes")})
    skipped.extend(r["skipped"])
  for s in splits.values():
    s["label_counts"] = dict(sorted(s["label_counts"].items()))
  manifest = {
      "format_version": manifest_lib.FORMAT_VERSION,
      "kind": plan["kind"],
      "features": plan["features"],
      "label_names": plan["label_names"],
      "splits": splits,
      "num_inputs": plan["num_inputs"],
      "skipped": skipped,
      "source": plan["source"],
      "command_line": plan["command_line"],
      "config": plan["config"],
      "fingerprint": plan["fingerprint"],
      **plan["extra"],
  }
  manifest_lib.write_json_atomic(os.path.join(out_dir, manifest_lib.MANIFEST_NAME), manifest)
  total = sum(s["num_examples"] for s in splits.values())
  logging.info("Wrote %s: %d examples in %d shards, %d inputs skipped",
               os.path.join(out_dir, manifest_lib.MANIFEST_NAME), total, len(records),
               len(skipped))
  fraction = len(skipped) / max(1, plan["num_inputs"])
  if fraction > max_skip_fraction:
    raise ConvertError(f"{len(skipped)} of {plan['num_inputs']} inputs ({fraction:.1%}) were "
                       f"skipped, more than --max_skip_fraction={max_skip_fraction:g}; see "
                       f"'skipped' in {os.path.join(out_dir, manifest_lib.MANIFEST_NAME)}",
                       EXIT_INCOMPLETE)
  return manifest
