"""The distributed reader: exactly-once epochs, corrupt shards, checks, flips."""

import collections
import os

import numpy as np
import tensorflow as tf

from input import convert
from input import manifest as manifest_lib
from input import reader


def _convert(source, output, **kwargs):
  kwargs.setdefault("num_workers", 1)
  return convert.run(convert.ConvertConfig(source=source, output=output, **kwargs))


def _epoch_keys(data_dir, num_pipelines, pipeline_id, **kwargs):
  config = reader.ReaderConfig(data_dir, repeat=False, drop_remainder=False, with_keys=True,
                               seed=5, **kwargs)
  fn = reader.make_dataset_fn(config, global_batch_size=8 * num_pipelines)
  ctx = tf.distribute.InputContext(num_input_pipelines=num_pipelines,
                                   input_pipeline_id=pipeline_id,
                                   num_replicas_in_sync=num_pipelines)
  return [k.decode() for b in fn(ctx).as_numpy_iterator() for k in b["key"]]


class ReaderTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tf.compat.v1.test.get_temp_dir()
    cls.data = os.path.join(cls.tmp, "shapes_reader")
    cls.manifest = _convert("builtin:shapes", cls.data, max_examples=101, min_shards=5)
    cls.all_keys = _epoch_keys(cls.data, 1, 0)
    assert len(set(cls.all_keys)) == len(cls.all_keys) == 101, cls.all_keys

  def test_two_pipelines_see_every_example_once_by_file(self):
    parts = [_epoch_keys(self.data, 2, i) for i in range(2)]
    self.assertEmpty(set(parts[0]) & set(parts[1]))
    self.assertEqual(collections.Counter(parts[0] + parts[1]),
                     collections.Counter(self.all_keys))
    # Files, not records, are split: each pipeline gets whole shards (2 or 3 of 5).
    shards = self.manifest["splits"]["train"]["shards"]
    for i in range(2):
      self.assertLen(parts[i], sum(s["num_records"] for s in shards[i::2]))

  def test_fewer_files_than_pipelines_falls_back_to_records(self):
    with self.assertLogs(level="WARNING") as logs:
      parts = [_epoch_keys(self.data, 8, i) for i in range(8)]
    self.assertTrue(any("5 shard files for 8 input pipelines" in l for l in logs.output))
    flat = [k for p in parts for k in p]
    self.assertEqual(collections.Counter(flat), collections.Counter(self.all_keys))

  def test_mirrored_strategy_two_replicas_epoch_once(self):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    config = reader.ReaderConfig(self.data, repeat=False, drop_remainder=False,
                                 with_keys=True)
    dist = strategy.distribute_datasets_from_function(
        reader.make_dataset_fn(config, global_batch_size=16))
    keys = []
    for batch in dist:
      for part in strategy.experimental_local_results(batch["key"]):
        keys.extend(k.decode() for k in part.numpy())
    self.assertEqual(collections.Counter(keys), collections.Counter(self.all_keys))

  def test_training_batches_have_fixed_per_replica_shape(self):
    fn = reader.make_dataset_fn(reader.ReaderConfig(self.data), global_batch_size=16)
    ctx = tf.distribute.InputContext(1, 0, num_replicas_in_sync=2)
    ds = fn(ctx)
    self.assertEqual(ds.element_spec["image"].shape.as_list(), [8, 32, 32, 3])
    self.assertEqual(ds.element_spec["label"].dtype, tf.int32)
    for i, batch in enumerate(ds.take(20)):  # 160 > 101 examples: repeats.
      self.assertEqual(batch["image"].shape, (8, 32, 32, 3))
    self.assertEqual(i, 19)
    with self.assertRaisesRegex(ValueError, "divisible"):
      fn(tf.distribute.InputContext(1, 0, num_replicas_in_sync=3))

  def test_deterministic_mode_repeats_order(self):
    def run():
      ds = reader.make_dataset(reader.ReaderConfig(self.data, deterministic=True,
                                                   with_keys=True, random_flip=True), 10)
      return [(b["key"].numpy().tolist(), b["image"].numpy().sum()) for b in ds.take(15)]
    self.assertEqual(run(), run())

  def test_requirements_mismatch_states_both_sides(self):
    cases = [
        (reader.Requirements(image_shape=(64, 64, 1)),
         r"has 32x32x3 images \(HxWxC\) but the model needs 64x64x1"),
        (reader.Requirements(kinds=("vector",)), "holds image data but the model needs vector"),
    ]
    for req, pattern in cases:
      with self.subTest(pattern=pattern):
        with self.assertRaisesRegex(manifest_lib.ManifestError, pattern):
          reader.make_dataset_fn(reader.ReaderConfig(self.data), 8, req)
    reader.make_dataset_fn(reader.ReaderConfig(self.data), 8, reader.Requirements(
        kinds=("image",), image_shape=(32, 32, 3), labels=True))

  def test_conditional_model_needs_labels(self):
    vec = os.path.join(self.tmp, "vec_nolabels")
    np.savez(os.path.join(self.tmp, "v.npz"), x=np.zeros((4, 2), np.float32))
    _convert(f"npz:{os.path.join(self.tmp, 'v.npz')}", vec)
    with self.assertRaisesRegex(manifest_lib.ManifestError, "no labels but the model is "
                                "conditional"):
      reader.make_dataset_fn(reader.ReaderConfig(vec), 2, reader.Requirements(labels=True))

  def test_unknown_split_and_missing_dir(self):
    with self.assertRaisesRegex(manifest_lib.ManifestError, "no split 'val'; it has test, train"):
      reader.make_dataset_fn(reader.ReaderConfig(self.data, split="val"), 8)
    with self.assertRaisesRegex(manifest_lib.ManifestError, "no manifest.json.*pipeline.convert"):
      reader.make_dataset_fn(reader.ReaderConfig(os.path.join(self.tmp, "nothing")), 8)

  def test_normalization_golden(self):
    d = os.path.join(self.tmp, "levels")
    x = np.array([0, 51, 255], np.uint8).reshape(3, 1, 1)
    np.savez(os.path.join(self.tmp, "levels.npz"), x=x)
    _convert(f"npz:{os.path.join(self.tmp, 'levels.npz')}", d)
    ds = reader.make_dataset(reader.ReaderConfig(d, shuffle_buffer=0, repeat=False,
                                                 deterministic=True, with_keys=True), 3)
    batch = next(iter(ds))
    got = dict(zip(batch["key"].numpy().tolist(), batch["image"].numpy().reshape(-1)))
    # x * 2/255 - 1: 0 -> -1, 51 -> -0.6, 255 -> 1
    self.assertAllClose([got[b"0"], got[b"1"], got[b"2"]], [-1.0, -0.6, 1.0], atol=1e-6)
    stored = next(iter(reader.make_dataset(reader.ReaderConfig(
        d, shuffle_buffer=0, repeat=False, deterministic=True, normalize=False), 3)))
    self.assertEqual(stored["image"].dtype, tf.uint8)
    self.assertAllClose(reader.normalize_batch(stored)["image"], batch["image"])
    self.assertAllClose(reader.normalize_images(tf.constant([0, 65535], tf.uint16)), [-1, 1])

  def test_random_flip_mirrors_paired_images_together(self):
    d = os.path.join(self.tmp, "paired_flip")
    _convert("builtin:shapes_paired", d, max_examples=64, min_shards=2)
    plain = reader.make_dataset(reader.ReaderConfig(d, shuffle_buffer=0, repeat=False,
                                                    deterministic=True, with_keys=True), 64)
    flip = reader.make_dataset(reader.ReaderConfig(d, shuffle_buffer=0, repeat=False,
                                                   deterministic=True, with_keys=True,
                                                   random_flip=True), 64)
    p, f = next(iter(plain)), next(iter(flip))
    self.assertAllEqual(p["key"], f["key"])
    flipped_a = np.all(f["image_a"].numpy() == p["image_a"].numpy()[:, :, ::-1], axis=(1, 2, 3))
    same_a = np.all(f["image_a"].numpy() == p["image_a"].numpy(), axis=(1, 2, 3))
    flipped_b = np.all(f["image_b"].numpy() == p["image_b"].numpy()[:, :, ::-1], axis=(1, 2, 3))
    self.assertTrue(np.all(flipped_a | same_a))
    self.assertAllEqual(flipped_a & ~same_a, flipped_b & ~same_a)  # Same coin for A and B.
    self.assertBetween(int(np.sum(flipped_a & ~same_a)), 16, 48)  # About half of 64.


class CorruptShardTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.data = os.path.join(self.create_tempdir().full_path, "d")
    _convert("builtin:shapes", self.data, max_examples=40, min_shards=4)
    self.bad = os.path.join(self.data, "train-00002-of-00004.tfrecord")
    with open(self.bad, "r+b") as f:
      f.seek(3 * 3200)  # Inside the 4th of its 10 records.
      f.write(b"\x00\x01\x02\x03")

  def test_corrupt_shard_error_names_the_file(self):
    ds = reader.make_dataset(reader.ReaderConfig(self.data, repeat=False, drop_remainder=False),
                             8)
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                r"corrupt or truncated TFRecord shard .*train-00002-of-00004"
                                r"\.tfrecord: read 3 of the 10 records"):
      for _ in ds:
        pass

  def test_skip_corrupt_counts_and_continues(self):
    ds = reader.make_dataset(reader.ReaderConfig(self.data, repeat=False, drop_remainder=False,
                                                 skip_corrupt=True, with_keys=True), 8)
    n = sum(int(b["key"].shape[0]) for b in ds)
    self.assertEqual(n, 40 - 7)  # The 7 records from the corrupt one on are lost.

  def test_truncated_shard(self):
    with open(self.bad, "r+b") as f:
      f.truncate(os.path.getsize(self.bad) - 100)
    ds = reader.make_dataset(reader.ReaderConfig(self.data, repeat=False, drop_remainder=False),
                             8)
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "train-00002-of-00004"):
      for _ in ds:
        pass


if __name__ == "__main__":
  tf.test.main()
