"""Reading converted TFRecords, one input pipeline per worker.

The trainer does (training/trainer.py, `_build_input`):

    dataset_fn = reader.make_dataset_fn(config, global_batch_size, requirements)
    iterator = iter(dataset_fn(tf.distribute.InputContext(num_workers, worker_index, replicas)))

and hands one per-replica batch to each local replica with
`experimental_distribute_values_from_function`: a plain iterator, unlike the
strategy's distributed ones, can be saved in a checkpoint (exact resume). The
function also fits `strategy.distribute_datasets_from_function`.

`dataset_fn(input_context)` builds the pipeline of one worker:
1. shard *files* by input pipeline (each worker reads a disjoint set of
   shards); with fewer files than pipelines it warns and shards records
   instead, reading the files in a fixed order so the record shards stay
   disjoint;
2. interleave parallel reads, checking that every shard yields the number of
   records the manifest promises (a corrupt or truncated shard is an error
   naming the file, or with `skip_corrupt` a logged count);
3. shuffle with a seed, repeat, batch per replica with `drop_remainder`;
4. parse and decode (batched for raw encoding), normalize images to [-1, 1]
   float32, optionally flip, prefetch.

Elements are dicts: `image` [B,H,W,C], or [B,D,H,W,C] for volumes
(`pipeline.convert --volumes`), (or `image_a`/`image_b` for paired and
unpaired data, `vector` [B,D] for 2-D data), `label` int32 [B] when the
dataset has labels (`label_a`/`label_b` for unpaired), `key` string [B] when
`with_keys` is set.
"""

import dataclasses
import sys

from absl import logging
import tensorflow as tf

from input import manifest as manifest_lib

ManifestError = manifest_lib.ManifestError
_AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True)
class ReaderConfig:
  """How to read a converted dataset.

  Attributes:
    data_dir: directory with `manifest.json` and the shards.
    split: split to read. For unpaired data `train` means `trainA` + `trainB`.
    shuffle_buffer: examples in each pipeline's shuffle buffer (0: no shuffle).
    random_flip: flip images left-right at random (paired images together).
    seed: seed of shuffling and flips; pipelines fold in their id.
    deterministic: produce the same element order on every run (slower:
      parallel stages keep their order).
    skip_corrupt: log and skip the unreadable records of a corrupt shard
      instead of failing.
    repeat: repeat forever (training); False reads one epoch.
    drop_remainder: drop the last partial batch (training wants fixed shapes).
    with_keys: also return each example's `key` (tests and debugging).
    cycle_length: shards read in parallel by each pipeline.
    normalize: return images as float32 in [-1, 1]. False returns them as
      stored (uint8 or uint16) for `normalize_images` to convert later, on
      the accelerator: the trainer does this, because the host-side float
      conversion costs as much as reading and moves 4x the bytes to the device.
  """
  data_dir: str
  split: str = "train"
  shuffle_buffer: int = 10_000
  random_flip: bool = False
  seed: int = 0
  deterministic: bool = False
  skip_corrupt: bool = False
  repeat: bool = True
  drop_remainder: bool = True
  with_keys: bool = False
  cycle_length: int = 8
  normalize: bool = True


@dataclasses.dataclass(frozen=True)
class Requirements:
  """What a model needs from the data; None means "anything".

  Attributes:
    kinds: acceptable dataset kinds, e.g. ("image",).
    image_shape: (H, W, C) the model was built for; (D, H, W, C) for volumes.
    vector_dim: D for vector data.
    labels: the model is conditional and needs labels.
  """
  kinds: tuple | None = None
  image_shape: tuple | None = None
  vector_dim: int | None = None
  labels: bool = False


def _describe_shape(shape):
  """`16x16x16x1 volumes (DxHxWxC)` for rank 4, `32x32x1 images (HxWxC)` else."""
  axes = "DxHxWxC" if len(shape) == 4 else "HxWxC"
  return f"{'x'.join(str(s) for s in shape)} {'volumes' if len(shape) == 4 else 'images'} ({axes})"


def check_requirements(manifest, requirements, data_dir="dataset"):
  """Raises ManifestError, stating both sides, when the data does not fit."""
  if requirements is None:
    return
  kind = manifest["kind"]
  if requirements.kinds and kind not in requirements.kinds:
    raise ManifestError(f"{data_dir!r} holds {kind} data but the model needs "
                        f"{' or '.join(requirements.kinds)} data")
  feats = manifest["features"]
  if requirements.image_shape is not None and kind != "vector":
    name = manifest_lib.FEATURES_BY_KIND[kind][0]
    have = tuple(feats[name]["shape"])
    if have != tuple(requirements.image_shape):
      raise ManifestError(
          f"{data_dir!r} has {_describe_shape(have)} but the model needs "
          f"{_describe_shape(requirements.image_shape)}; convert again with "
          f"{'--volume_size' if len(have) == 4 else '--image_size and --channels'}, or build "
          "the model for the data")
  if requirements.vector_dim is not None and kind == "vector":
    have = feats["vector"]["shape"][0]
    if have != requirements.vector_dim:
      raise ManifestError(f"{data_dir!r} has {have}-D vectors but the model needs "
                          f"{requirements.vector_dim}-D")
  if requirements.labels and not manifest.get("label_names"):
    raise ManifestError(f"{data_dir!r} has no labels but the model is conditional; convert a "
                        "source with labels (class subfolders, a ClassLabel, or npz 'y')")


def _domain_splits(manifest, split):
  if manifest["kind"] == "unpaired" and split in ("train", "test"):
    return [split + "A", split + "B"]
  return [split]


def _feature_spec(manifest, with_keys):
  spec = {"key": tf.io.FixedLenFeature([], tf.string)} if with_keys else {}
  kind = manifest["kind"]
  if kind == "vector":
    spec["vector"] = tf.io.FixedLenFeature(manifest["features"]["vector"]["shape"], tf.float32)
  else:
    for name in manifest_lib.FEATURES_BY_KIND[kind]:
      spec[name] = tf.io.FixedLenFeature([], tf.string)
  if manifest.get("label_names"):
    spec["label"] = tf.io.FixedLenFeature([], tf.int64)
  return spec


_CHECK_CHUNK = 256  # Records counted per step of the integrity check.


def _checked_records(path, expected, skip_corrupt):
  """The records of one shard, failing (or logging) when fewer than expected.

  A TFRecord framing or CRC error stops the read of a file; TensorFlow's own
  error does not name the file. Here the file's records are read with errors
  ignored and counted, and a sentinel at the end compares the count with the
  manifest, so the error names the shard. Records are counted in chunks of
  `_CHECK_CHUNK`, so that the check costs a few ops per chunk, not per record.
  """
  chunks = (tf.data.TFRecordDataset(path).ignore_errors().batch(_CHECK_CHUNK)
            .map(lambda r: (r, False)))
  sentinel = tf.data.Dataset.from_tensors((tf.zeros([0], tf.string), True))

  def step(count, elem):
    records, is_end = elem
    new_count = count + tf.cast(tf.shape(records)[0], tf.int64)

    def at_end():
      message = tf.strings.join([
          "corrupt or truncated TFRecord shard ", path, ": read ", tf.strings.as_string(count),
          " of the ", tf.strings.as_string(expected), " records in the manifest"])
      if skip_corrupt:
        return tf.cond(
            count < expected,
            lambda: _print_warning(tf.strings.join([
                "WARNING: skipping ", tf.strings.as_string(expected - count),
                " unreadable records: ", message])),
            lambda: tf.constant(True))
      check = tf.debugging.Assert(tf.equal(count, expected), [message], summarize=1)
      with tf.control_dependencies([check]):
        return tf.constant(True)

    ok = tf.cond(is_end, at_end, lambda: tf.constant(True))
    with tf.control_dependencies([ok]):
      new_count = tf.identity(new_count)
    return new_count, records

  return chunks.concatenate(sentinel).scan(tf.constant(0, tf.int64), step).unbatch()


def _print_warning(message):
  with tf.control_dependencies([tf.print(message, output_stream=sys.stderr)]):
    return tf.constant(True)


def _split_records(data_dir, manifest, split, ctx, config):
  """Serialized records of one split for the pipeline described by ctx."""
  shards = manifest["splits"][split]["shards"]
  paths = manifest_lib.shard_paths(data_dir, manifest, split)
  counts = [s["num_records"] for s in shards]
  n_pipes = ctx.num_input_pipelines if ctx else 1
  pipe_id = ctx.input_pipeline_id if ctx else 0
  files = tf.data.Dataset.from_tensor_slices((paths, tf.constant(counts, tf.int64)))
  shard_records = False
  if n_pipes > 1 and len(paths) >= n_pipes:
    files = files.shard(n_pipes, pipe_id)
    if config.shuffle_buffer:
      files = files.shuffle(len(paths), seed=config.seed + pipe_id)
  elif n_pipes > 1:
    logging.warning(
        "Split %s of %s has %d shard files for %d input pipelines: every pipeline reads "
        "every file and keeps 1/%d of the records. Convert with --min_shards >= %d so that "
        "each worker reads its own files.", split, data_dir, len(paths), n_pipes, n_pipes,
        n_pipes)
    shard_records = True
  elif config.shuffle_buffer:
    files = files.shuffle(len(paths), seed=config.seed)
  # With record sharding every pipeline must see the records in the same order.
  deterministic = config.deterministic or shard_records
  records = files.interleave(
      lambda p, n: _checked_records(p, n, config.skip_corrupt),
      cycle_length=min(config.cycle_length, len(paths)),
      num_parallel_calls=_AUTOTUNE, deterministic=deterministic)
  if shard_records:
    records = records.shard(n_pipes, pipe_id)
  return records


def normalize_images(x):
  """uint8 or uint16 images -> float32 in [-1, 1] (x * 2 / max - 1)."""
  if x.dtype == tf.float32:
    return x
  scale = 2.0 / (255.0 if x.dtype == tf.uint8 else 65535.0)
  return tf.cast(x, tf.float32) * scale - 1.0


def normalize_batch(batch):
  """Applies `normalize_images` to every image feature of a batch dict."""
  return {k: normalize_images(v) if k.startswith("image") else v for k, v in batch.items()}


def _decode_images(data, feat, batched, normalize):
  shape = feat["shape"]
  dtype = tf.uint8 if feat["dtype"] == "uint8" else tf.uint16
  if feat["encoding"] == "raw":
    x = tf.io.decode_raw(data, dtype, little_endian=True)
    x = tf.reshape(x, ([-1] if batched else []) + shape)
    if batched:  # Keep the static batch size that drop_remainder gave.
      x = tf.ensure_shape(x, [data.shape[0]] + shape)
  else:
    x = tf.io.decode_png(data, channels=shape[-1], dtype=dtype)
    x = tf.ensure_shape(x, shape)
  return normalize_images(x) if normalize else x


def _parse_fn(manifest, with_keys, batched, normalize):
  spec = _feature_spec(manifest, with_keys)
  kind = manifest["kind"]

  def parse(serialized):
    ex = (tf.io.parse_example if batched else tf.io.parse_single_example)(serialized, spec)
    out = {}
    if kind == "vector":
      out["vector"] = ex["vector"]
    else:
      for name in manifest_lib.FEATURES_BY_KIND[kind]:
        out[name] = _decode_images(ex[name], manifest["features"][name], batched, normalize)
    if "label" in ex:
      out["label"] = tf.cast(ex["label"], tf.int32)
    if with_keys:
      out["key"] = ex["key"]
    return out

  return parse


def _flip(batch, seed):
  """Flips images left-right per example: the W axis, the last spatial one,
  of [B, H, W, C] images and [B, D, H, W, C] volumes alike. Paired images
  share the coin."""
  names = [n for n in ("image", "image_a", "image_b") if n in batch]
  if not names:
    return batch
  b = tf.shape(batch[names[0]])[0]
  coin = tf.random.stateless_uniform([b], seed=seed) < 0.5
  out = dict(batch)
  for n in names:
    rank = batch[n].shape.rank
    out[n] = tf.where(tf.reshape(coin, [-1] + [1] * (rank - 1)),
                      tf.reverse(batch[n], axis=[rank - 2]), batch[n])
  return out


def _pipeline(data_dir, manifest, split, ctx, config, batch_size):
  pipe_id = ctx.input_pipeline_id if ctx else 0
  ds = _split_records(data_dir, manifest, split, ctx, config)
  if config.shuffle_buffer:
    ds = ds.shuffle(config.shuffle_buffer, seed=config.seed * 1_000_003 + pipe_id,
                    reshuffle_each_iteration=True)
  if config.repeat:
    ds = ds.repeat()
  raw = all(f.get("encoding", "raw") == "raw" for f in manifest["features"].values())
  if raw:  # Parse and decode whole batches: one op per batch, not per image.
    ds = ds.batch(batch_size, drop_remainder=config.drop_remainder)
    ds = ds.map(_parse_fn(manifest, config.with_keys, True, config.normalize),
                num_parallel_calls=_AUTOTUNE, deterministic=config.deterministic)
  else:
    ds = ds.map(_parse_fn(manifest, config.with_keys, False, config.normalize),
                num_parallel_calls=_AUTOTUNE, deterministic=config.deterministic)
    ds = ds.batch(batch_size, drop_remainder=config.drop_remainder,
                  num_parallel_calls=_AUTOTUNE, deterministic=config.deterministic)
  if config.random_flip and manifest["kind"] != "vector":
    base = tf.random.experimental.stateless_fold_in(
        tf.constant([config.seed, 0], tf.int64), pipe_id)
    ds = ds.enumerate().map(
        lambda i, batch: _flip(batch, tf.random.experimental.stateless_fold_in(base, i)),
        num_parallel_calls=_AUTOTUNE, deterministic=config.deterministic)
  return ds


def make_dataset_fn(config, global_batch_size, requirements=None):
  """Returns `dataset_fn(input_context)`: one worker's pipeline (see the module doc).

  The manifest is read and checked here, in the calling process, so that a
  missing dataset or a mismatch with the model fails before training starts.

  Args:
    config: a `ReaderConfig`.
    global_batch_size: examples per step across all replicas.
    requirements: optional `Requirements` checked against the manifest.

  Raises:
    ManifestError: missing or incomplete dataset, unknown split, or data that
      does not fit `requirements`.
  """
  manifest = manifest_lib.load(config.data_dir)
  check_requirements(manifest, requirements, config.data_dir)
  splits = _domain_splits(manifest, config.split)
  for s in splits:
    manifest_lib.shard_paths(config.data_dir, manifest, s)  # Fail early on a missing shard.

  def dataset_fn(input_context=None):
    if input_context is not None:
      batch_size = input_context.get_per_replica_batch_size(global_batch_size)
    else:
      batch_size = global_batch_size
    parts = [_pipeline(config.data_dir, manifest, s, input_context, config, batch_size)
             for s in splits]
    if len(parts) == 1:
      ds = parts[0]
    else:  # Unpaired: the two domains, drawn independently.
      ds = tf.data.Dataset.zip(tuple(parts)).map(_merge_domains)
    options = tf.data.Options()
    options.deterministic = config.deterministic
    # This function shards itself. The policy matters only where a strategy
    # distributes the dataset (distribute_datasets_from_function, or
    # experimental_distribute_dataset of it); the trainer's plain iterator
    # never auto-shards.
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF)
    return ds.with_options(options).prefetch(_AUTOTUNE)

  return dataset_fn


def _merge_domains(a, b):
  out = {"image_a": a["image"], "image_b": b["image"]}
  for suffix, part in (("a", a), ("b", b)):
    for k in ("label", "key"):
      if k in part:
        out[f"{k}_{suffix}"] = part[k]
  return out


def make_dataset(config, batch_size, requirements=None):
  """A single-pipeline dataset (evaluation, tools, tests)."""
  return make_dataset_fn(config, batch_size, requirements)(None)
