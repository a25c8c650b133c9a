"""Conversion of every source kind, read back through the reader."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from input import cache
from input import convert
from input import manifest as manifest_lib
from input import reader
from tests import helpers


def _convert(source, output, **kwargs):
  kwargs.setdefault("num_workers", 1)
  return convert.run(convert.ConvertConfig(source=source, output=output, **kwargs))


def _read_all(data_dir, split="train", **kwargs):
  """One epoch, no shuffling, as numpy dicts keyed by example key."""
  ds = reader.make_dataset(reader.ReaderConfig(
      data_dir, split=split, shuffle_buffer=0, repeat=False, drop_remainder=False,
      with_keys=True, deterministic=True, **kwargs), 1000)
  out = {}
  for batch in ds.as_numpy_iterator():
    keys = batch.pop("key", None)
    if keys is None:
      keys = batch.pop("key_a")
    for i, k in enumerate(keys):
      out[k.decode()] = {name: v[i] for name, v in batch.items() if not name.startswith("key")}
  return out


def _checksums(data_dir):
  m = manifest_lib.load(data_dir)
  return {s["file"]: s["sha256"] for split in m["splits"].values() for s in split["shards"]}


def _pixel(value, depth=8):
  """Normalized [-1, 1] value of a stored pixel."""
  return value * 2.0 / (255.0 if depth == 8 else 65535.0) - 1.0


class FolderTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.src = self.create_tempdir().full_path
    self.out = os.path.join(self.create_tempdir().full_path, "out")

  def test_class_subfolders_become_labels(self):
    helpers.make_class_folder(self.src, per_class=6)
    m = _convert(f"folder:{self.src}", self.out, min_shards=4)
    self.assertEqual(m["kind"], "image")
    self.assertEqual(m["label_names"], ["cat", "dog"])
    self.assertEqual(m["splits"]["train"]["label_counts"], {"cat": 6, "dog": 6})
    self.assertEqual(m["features"]["image"], {"shape": [8, 8, 3], "dtype": "uint8",
                                              "encoding": "raw"})
    self.assertLen(m["splits"]["train"]["shards"], 4)
    self.assertTrue(os.path.isfile(os.path.join(self.out, "train-00003-of-00004.tfrecord")))
    data = _read_all(self.out)
    self.assertLen(data, 12)
    for key, ex in data.items():
      cls, value = (0, 40) if key.startswith("cat") else (1, 200)
      self.assertEqual(ex["label"], cls)
      self.assertAllClose(ex["image"], np.full((8, 8, 3), _pixel(value)), atol=1e-6)
    for shard in m["splits"]["train"]["shards"]:
      with open(os.path.join(self.out, shard["file"]), "rb") as f:
        self.assertEqual(hashlib.sha256(f.read()).hexdigest(), shard["sha256"])
    self.assertEqual(sum(s["num_records"] for s in m["splits"]["train"]["shards"]), 12)

  def test_images_at_top_level_have_no_labels(self):
    for i in range(3):
      helpers.save(os.path.join(self.src, f"{i}.png"), helpers.solid(4, 4, 9 * i, channels=1))
    m = _convert(f"folder:{self.src}", self.out)
    self.assertIsNone(m["label_names"])
    self.assertEqual(m["features"]["image"]["shape"], [4, 4, 1])
    data = _read_all(self.out)
    self.assertNotIn("label", data["1.png"])
    self.assertAllClose(data["2.png"]["image"], np.full((4, 4, 1), _pixel(18)), atol=1e-6)

  def test_mixed_formats_sizes_and_a_truncated_jpeg(self):
    d = self.src
    g16 = np.full((20, 30), 40000, np.uint16)
    helpers.save(os.path.join(d, "a", "gray16.png"), g16)
    helpers.save(os.path.join(d, "a", "rgba.png"),
                 np.tile(np.array([200, 100, 50, 255], np.uint8), (12, 12, 1)))
    gif = np.zeros((10, 10, 3), np.uint8) + np.array([0, 0, 255], np.uint8)
    from PIL import Image  # pylint: disable=import-outside-toplevel
    os.makedirs(os.path.join(d, "b"))
    Image.fromarray(gif).convert("P", palette=Image.Palette.ADAPTIVE, colors=2).save(
        os.path.join(d, "b", "pal.gif"))
    helpers.save(os.path.join(d, "b", "big.bmp"), helpers.solid(40, 24, 90))
    for i in range(96):  # Enough good files that one bad one stays under 1%.
      helpers.save(os.path.join(d, "b", f"ok{i:03d}.jpg"), helpers.solid(16, 16, 128),
                   quality=100)
    helpers.write_truncated_jpeg(os.path.join(d, "b", "broken.jpg"))
    with open(os.path.join(d, "notes.txt"), "w") as f:
      f.write("not an image")
    with open(os.path.join(d, "a", "readme.md"), "w") as f:
      f.write("ignored")

    # Mixed sizes without --image_size: a clear error, nothing written.
    with self.assertRaisesRegex(convert.ConvertError, r"different sizes.*--image_size"):
      _convert(f"folder:{d}", self.out, labels="none")
    self.assertFalse(os.path.exists(self.out))

    m = _convert(f"folder:{d}", self.out, image_size=8, labels="subfolder", bit_depth=16,
                 max_skip_fraction=0.02)
    self.assertEqual(m["features"]["image"], {"shape": [8, 8, 3], "dtype": "uint16",
                                              "encoding": "raw"})
    self.assertEqual(m["num_inputs"], 101)
    self.assertEqual([s["key"] for s in m["skipped"]], [os.path.join("b", "broken.jpg")])
    self.assertIn("truncated", m["skipped"][0]["reason"])
    self.assertEqual(m["ignored_non_image_files"], 2)  # notes.txt and readme.md
    data = _read_all(self.out)
    self.assertLen(data, 100)
    # 16-bit gray, kept exact in 16 bits and repeated to RGB.
    self.assertAllClose(data["a/gray16.png"]["image"], np.full((8, 8, 3), _pixel(40000, 16)),
                        atol=1e-6)
    self.assertAllClose(data["a/rgba.png"]["image"][0, 0],
                        [_pixel(200 * 257, 16), _pixel(100 * 257, 16), _pixel(50 * 257, 16)],
                        atol=1e-6)
    self.assertAllClose(data["b/pal.gif"]["image"][4, 4],
                        [-1.0, -1.0, _pixel(255 * 257, 16)], atol=1e-6)
    self.assertEqual(data["b/big.bmp"]["label"], 1)

  def test_16bit_grayscale_round_trip_png_encoding(self):
    values = np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000 + 7
    helpers.save(os.path.join(self.src, "scan.png"), values)
    m = _convert(f"folder:{self.src}", self.out, bit_depth=16, encoding="png")
    self.assertEqual(m["features"]["image"], {"shape": [4, 4, 1], "dtype": "uint16",
                                              "encoding": "png"})
    got = _read_all(self.out)["scan.png"]["image"][..., 0]
    self.assertAllClose(got, _pixel(values.astype(np.float64), 16), atol=1e-6)

  def test_too_many_skipped_fails_after_writing_manifest(self):
    helpers.make_class_folder(self.src, per_class=2)
    helpers.write_truncated_jpeg(os.path.join(self.src, "cat", "bad.jpg"))
    with self.assertRaisesRegex(convert.ConvertError, r"1 of 5 inputs \(20.0%\)") as cm:
      _convert(f"folder:{self.src}", self.out, image_size=8)
    self.assertEqual(cm.exception.exit_code, convert.EXIT_INCOMPLETE)
    m = manifest_lib.load(self.out)
    self.assertEqual(m["skipped"][0]["key"], os.path.join("cat", "bad.jpg"))

  def test_errors_write_nothing(self):
    empty = self.create_tempdir().full_path
    cases = [
        (f"folder:{empty}", self.out, "holds no images"),
        ("zip:/x", self.out, "unknown source 'zip:/x'.*folder, tfds, npz"),
        (f"folder:{self.src}/missing", self.out, "does not exist"),
        ("builtin:spirals", self.out, "unknown builtin dataset 'spirals'; valid: grid2d"),
    ]
    helpers.make_class_folder(self.src, per_class=1)
    cases.append((f"folder:{self.src}", os.path.join(self.src, "tfr"), "inside the source"))
    for source, out, pattern in cases:
      with self.subTest(source=source):
        with self.assertRaisesRegex(convert.ConvertError, pattern) as cm:
          _convert(source, out)
        self.assertEqual(cm.exception.exit_code, convert.EXIT_USAGE)
        self.assertFalse(os.path.exists(out))

  def test_mixed_top_level_and_subfolders_is_ambiguous(self):
    helpers.make_class_folder(self.src, per_class=1)
    helpers.save(os.path.join(self.src, "stray.png"), helpers.solid(8, 8, 1))
    with self.assertRaisesRegex(convert.ConvertError, "both directly in it.*--labels=none"):
      _convert(f"folder:{self.src}", self.out)
    m = _convert(f"folder:{self.src}", self.out, labels="none")
    self.assertIsNone(m["label_names"])


class OtherSourcesTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.tmp = self.create_tempdir().full_path
    self.out = os.path.join(self.tmp, "out")

  def test_npz_images_with_labels_exact(self):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (10, 6, 5, 3), dtype=np.uint8)
    y = np.arange(10) % 3
    path = os.path.join(self.tmp, "d.npz")
    np.savez(path, x=x, y=y, label_names=np.array(["a", "b", "c"]))
    m = _convert(f"npz:{path}", self.out, min_shards=3)
    self.assertEqual(m["label_names"], ["a", "b", "c"])
    self.assertEqual(m["splits"]["train"]["label_counts"], {"a": 4, "b": 3, "c": 3})
    data = _read_all(self.out)
    for i in range(10):
      self.assertAllClose(data[str(i)]["image"], _pixel(x[i].astype(np.float64)), atol=1e-6)
      self.assertEqual(data[str(i)]["label"], y[i])

  def test_npz_vectors(self):
    x = np.random.default_rng(2).normal(size=(20, 2)).astype(np.float32)
    path = os.path.join(self.tmp, "v.npz")
    np.savez(path, x=x)
    m = _convert(f"npz:{path}", self.out)
    self.assertEqual(m["kind"], "vector")
    self.assertEqual(m["features"], {"vector": {"shape": [2], "dtype": "float32"}})
    data = _read_all(self.out)
    self.assertAllEqual(np.stack([data[str(i)]["vector"] for i in range(20)]), x)

  def test_npz_float_images_out_of_range(self):
    path = os.path.join(self.tmp, "f.npz")
    np.savez(path, x=np.full((2, 4, 4), 3.0, np.float32))
    with self.assertRaisesRegex(convert.ConvertError, r"must lie in \[0, 1\], found \[3, 3\]"):
      _convert(f"npz:{path}", self.out)

  def test_tfds_mock(self):
    with tfds.testing.mock_data(num_examples=7):
      m = _convert("tfds:mnist:train", self.out, min_shards=2)
    self.assertEqual(m["features"]["image"]["shape"], [28, 28, 1])
    self.assertEqual(m["label_names"], [str(i) for i in range(10)])
    self.assertEqual(m["splits"]["train"]["num_examples"], 7)
    data = _read_all(self.out)
    self.assertLen(data, 7)
    self.assertSetEqual(set(data), {f"train/{i}" for i in range(7)})
    with tfds.testing.mock_data(num_examples=7):
      expected = list(tfds.as_numpy(tfds.builder("mnist").as_dataset(
          split="train", shuffle_files=False)))
    for i, ex in enumerate(expected):
      self.assertAllClose(data[f"train/{i}"]["image"],
                          _pixel(ex["image"].astype(np.float64)), atol=1e-6)
      self.assertEqual(data[f"train/{i}"]["label"], ex["label"])

  def test_paired_by_name_with_an_unmatched_file(self):
    a, b = os.path.join(self.tmp, "A"), os.path.join(self.tmp, "B")
    for i in range(4):
      helpers.save(os.path.join(a, f"{i}.png"), helpers.solid(8, 8, 10 * i))
      helpers.save(os.path.join(b, f"{i}.jpg"), helpers.solid(8, 8, 200), quality=100)
    helpers.save(os.path.join(a, "lonely.png"), helpers.solid(8, 8, 1))
    m = _convert(f"paired:{a},{b}", self.out, max_skip_fraction=0.5)
    self.assertEqual(m["kind"], "paired")
    self.assertEqual(m["skipped"], [{"key": "A/lonely.png",
                                     "reason": f"no file named lonely.* in {b}"}])
    data = _read_all(self.out)
    self.assertLen(data, 4)
    self.assertAllClose(data["3"]["image_a"], np.full((8, 8, 3), _pixel(30)), atol=1e-6)
    self.assertAllClose(data["3"]["image_b"], np.full((8, 8, 3), _pixel(200)), atol=1e-2)

  def test_paired_side_by_side(self):
    ab = np.concatenate([helpers.solid(6, 6, 20), helpers.solid(6, 6, 220)], axis=1)
    for i in range(3):
      helpers.save(os.path.join(self.tmp, "ab", f"{i}.png"), ab)
    m = _convert(f"paired:{os.path.join(self.tmp, 'ab')}", self.out)
    self.assertEqual(m["features"]["image_a"]["shape"], [6, 6, 3])
    ex = _read_all(self.out)["1.png"]
    self.assertAllClose(ex["image_a"], np.full((6, 6, 3), _pixel(20)), atol=1e-6)
    self.assertAllClose(ex["image_b"], np.full((6, 6, 3), _pixel(220)), atol=1e-6)

  def test_unpaired_domains(self):
    a, b = os.path.join(self.tmp, "A"), os.path.join(self.tmp, "B")
    for i in range(5):
      helpers.save(os.path.join(a, f"a{i}.png"), helpers.solid(8, 8, 30))
    for i in range(3):
      helpers.save(os.path.join(b, f"b{i}.png"), helpers.solid(8, 8, 230))
    m = _convert(f"unpaired:{a},{b}", self.out)
    self.assertEqual(sorted(m["splits"]), ["trainA", "trainB"])
    self.assertEqual(m["splits"]["trainB"]["num_examples"], 3)
    ds = reader.make_dataset(reader.ReaderConfig(self.out, seed=3), 4)
    batch = next(iter(ds))
    self.assertAllClose(batch["image_a"], np.full((4, 8, 8, 3), _pixel(30)), atol=1e-6)
    self.assertAllClose(batch["image_b"], np.full((4, 8, 8, 3), _pixel(230)), atol=1e-6)

  def test_every_builtin_converts_and_reads(self):
    expected = {
        "shapes": ("image", {"train", "test"}, "image", (32, 32, 3)),
        "ring2d": ("vector", {"train", "test"}, "vector", (2,)),
        "grid2d": ("vector", {"train", "test"}, "vector", (2,)),
        "shapes_paired": ("paired", {"train", "test"}, "image_a", (32, 32, 3)),
        "shapes_unpaired": ("unpaired", {"trainA", "trainB", "testA", "testB"}, "image_a",
                            (32, 32, 3)),
    }
    for name, (kind, splits, feature, shape) in expected.items():
      with self.subTest(name=name):
        out = os.path.join(self.tmp, name)
        m = _convert(f"builtin:{name}", out, max_examples=24, min_shards=2)
        self.assertEqual(m["kind"], kind)
        self.assertEqual(set(m["splits"]), splits)
        batch = next(iter(reader.make_dataset(reader.ReaderConfig(out), 8)))
        self.assertEqual(tuple(batch[feature].shape[1:]), shape)
        self.assertEqual(batch["label" if kind != "unpaired" else "label_a"].shape, (8,))

  def test_builtin_ring_modes_and_std(self):
    out = os.path.join(self.tmp, "ring")
    m = _convert("builtin:ring2d", out, max_examples=2000)
    centers = np.array(m["builtin"]["centers"])
    self.assertAllClose(np.linalg.norm(centers, axis=1), np.full(8, 2.0))
    data = _read_all(out)
    x = np.stack([d["vector"] for d in data.values()])
    mode = np.array([d["label"] for d in data.values()])
    resid = x - centers[mode]
    self.assertAllClose(resid.std(), 0.02, rtol=0.1)
    self.assertAllClose(np.bincount(mode, minlength=8) / len(mode), np.full(8, 1 / 8),
                        atol=0.03)

  def test_builtin_is_deterministic_and_cached(self):
    cache_dir = os.path.join(self.tmp, "cache")
    d1 = cache.ensure_builtin("shapes", cache_dir=cache_dir, max_examples=40, num_workers=1)
    mtime = os.path.getmtime(os.path.join(d1, "manifest.json"))
    d2 = cache.ensure_builtin("shapes", cache_dir=cache_dir, max_examples=40, num_workers=1)
    self.assertEqual(d1, d2)
    self.assertEqual(mtime, os.path.getmtime(os.path.join(d2, "manifest.json")))
    other = _convert("builtin:shapes", os.path.join(self.tmp, "again"), max_examples=40)
    self.assertEqual(_checksums(d1), {s["file"]: s["sha256"] for sp in other["splits"].values()
                                      for s in sp["shards"]})


class ShardingAndResumeTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.tmp = self.create_tempdir().full_path

  def _out(self, name):
    return os.path.join(self.tmp, name)

  def test_default_shard_count(self):
    m = _convert("builtin:shapes", self._out("a"), max_examples=100)
    self.assertLen(m["splits"]["train"]["shards"], 16)  # --min_shards
    m = _convert("builtin:shapes", self._out("b"), max_examples=10)
    self.assertLen(m["splits"]["train"]["shards"], 10)  # never more than examples
    # 100 examples of 3072 + 64 bytes at 0.1 MB per shard: ceil(313600/100000) = 4 shards.
    m = _convert("builtin:shapes", self._out("c"), max_examples=100, min_shards=1,
                 target_shard_mb=0.1)
    self.assertLen(m["splits"]["train"]["shards"], 4)

  def test_output_independent_of_workers(self):
    one = _convert("builtin:shapes", self._out("one"), max_examples=64, num_workers=1)
    two = _convert("builtin:shapes", self._out("two"), max_examples=64, num_workers=2)
    self.assertEqual(_checksums(self._out("one")), _checksums(self._out("two")))
    self.assertEqual(one["splits"], two["splits"])

  def test_tasks_then_finalize_equal_single_run(self):
    _convert("builtin:shapes", self._out("single"), max_examples=48, min_shards=4)
    out = self._out("tasks")
    for t in (2, 0):  # Task 1 has not run yet.
      self.assertIsNone(_convert("builtin:shapes", out, max_examples=48, min_shards=4,
                                 num_tasks=3, task_index=t))
    self.assertFalse(os.path.exists(os.path.join(out, "manifest.json")))
    with self.assertRaisesRegex(convert.ConvertError, r"3 of 8 shards are missing.*tasks \[1\]") as cm:
      convert.run(convert.ConvertConfig(source="", output=out, finalize=True))
    self.assertEqual(cm.exception.exit_code, convert.EXIT_INCOMPLETE)
    with self.assertRaisesRegex(manifest_lib.ManifestError, "unfinished conversion"):
      reader.make_dataset(reader.ReaderConfig(out), 4)
    _convert("builtin:shapes", out, max_examples=48, min_shards=4, num_tasks=3, task_index=1)
    convert.run(convert.ConvertConfig(source="", output=out, finalize=True))
    self.assertEqual(_checksums(out), _checksums(self._out("single")))

  def test_rerun_keeps_complete_shards_and_redoes_damaged_ones(self):
    out = self._out("r")
    _convert("builtin:shapes", out, max_examples=32, min_shards=4)
    before = _checksums(out)
    keep = os.path.join(out, "train-00000-of-00004.tfrecord")
    damage = os.path.join(out, "train-00001-of-00004.tfrecord")
    os.utime(keep, (1, 1))
    with open(damage, "r+b") as f:
      f.seek(100)
      f.write(b"\xff\xff\xff")
    _convert("builtin:shapes", out, max_examples=32, min_shards=4)
    self.assertEqual(os.path.getmtime(keep), 1)  # Kept, not rewritten.
    self.assertEqual(_checksums(out), before)  # The damaged shard was redone.

  def test_different_config_needs_overwrite(self):
    out = self._out("o")
    _convert("builtin:shapes", out, max_examples=16, min_shards=2)
    with self.assertRaisesRegex(convert.ConvertError, "different conversion.*--overwrite"):
      _convert("builtin:shapes", out, max_examples=16, min_shards=4)
    _convert("builtin:shapes", out, max_examples=16, min_shards=4, overwrite=True)
    names = sorted(n for n in os.listdir(out) if n.endswith(".tfrecord"))
    self.assertEqual(names, [manifest_lib.shard_name(s, i, 4) for s in ("test", "train")
                             for i in range(4)])

  def test_refuses_a_directory_of_other_files(self):
    out = self._out("home")
    os.makedirs(out)
    with open(os.path.join(out, "thesis.tex"), "w") as f:
      f.write("x")
    with self.assertRaisesRegex(convert.ConvertError, "not from a conversion.*thesis.tex"):
      _convert("builtin:shapes", out, max_examples=4, overwrite=True)
    self.assertEqual(os.listdir(out), ["thesis.tex"])

  def test_killed_conversion_resumes_to_same_checksums(self):
    """SIGKILL in the middle of a shard, then re-run: same shards as one clean run."""
    flags = dict(max_examples=120, min_shards=6)
    _convert("builtin:shapes", self._out("clean"), **flags)
    out = self._out("killed")
    # Kill this process hard after 50 records: 2 shards of 20 done, the 3rd half written.
    script = f"""
import os, signal
from input import convert, shards
count = [0]
orig = shards.ShardWriter.add
def add(self, *a, **k):
  count[0] += 1
  if count[0] == 51:
    os.kill(os.getpid(), signal.SIGKILL)
  return orig(self, *a, **k)
shards.ShardWriter.add = add
convert.run(convert.ConvertConfig(source="builtin:shapes", output={out!r}, num_workers=1,
                                  max_examples=120, min_shards=6))
"""
    proc = subprocess.run([sys.executable, "-c", script], env=helpers.subprocess_env(),
                          capture_output=True, check=False)
    self.assertEqual(proc.returncode, -9, proc.stderr.decode()[-2000:])
    names = os.listdir(out)
    self.assertLen([n for n in names if n.endswith(".tfrecord")], 2)
    self.assertLen([n for n in names if ".tmp-" in n], 1)  # The half-written shard.
    self.assertNotIn("manifest.json", names)
    _convert("builtin:shapes", out, num_workers=2, **flags)
    self.assertEqual(_checksums(out), _checksums(self._out("clean")))
    self.assertEmpty([n for n in os.listdir(out) if ".tmp-" in n])


class CommandLineTest(tf.test.TestCase):
  """The binary: exit codes and one-line errors."""

  def _run(self, *args):
    return subprocess.run([sys.executable, "-m", "pipeline.convert", *args],
                          env=helpers.subprocess_env(), capture_output=True, text=True,
                          check=False, cwd=helpers.REPO_ROOT)

  def test_usage_errors_exit_2_with_one_line(self):
    tmp = self.create_tempdir().full_path
    out = os.path.join(tmp, "out")
    proc = self._run("--source=tarball:/x", f"--output={out}")
    self.assertEqual(proc.returncode, 2)
    errors = [l for l in proc.stderr.splitlines() if l.startswith("convert: error:")]
    self.assertLen(errors, 1)
    self.assertIn("unknown source 'tarball:/x'", errors[0])
    self.assertFalse(os.path.exists(out))

  def test_converts_and_records_command_line(self):
    out = os.path.join(self.create_tempdir().full_path, "out")
    proc = self._run("--source=builtin:grid2d", f"--output={out}", "--max_examples=50",
                     "--num_workers=1")
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    with open(os.path.join(out, "manifest.json")) as f:
      m = json.load(f)
    self.assertIn("--source=builtin:grid2d", m["command_line"])
    self.assertEqual(m["source"], "builtin:grid2d")
    self.assertEqual(m["splits"]["train"]["num_examples"], 50)
    self.assertLen(m["builtin"]["centers"], 25)


if __name__ == "__main__":
  tf.test.main()
