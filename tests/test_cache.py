"""input/cache.py: the converted-data cache and the one resolver of data specs."""

import os
import re
import time

import tensorflow as tf

from input import cache
from input import manifest as manifest_lib
from tests import helpers


def _entries(cache_dir):
  root = os.path.join(cache_dir, "folder")
  return sorted(os.listdir(root)) if os.path.isdir(root) else []


class CacheTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.tmp = self.create_tempdir().full_path
    self.src = helpers.make_class_folder(os.path.join(self.tmp, "src"), per_class=3)
    self.cache_dir = os.path.join(self.tmp, "cache")

  def convert(self):
    return cache.ensure_converted(f"folder:{self.src}", cache_dir=self.cache_dir,
                                  num_workers=1)

  def test_an_unchanged_folder_is_converted_once(self):
    first = self.convert()
    stamp = os.path.getmtime(os.path.join(first, manifest_lib.MANIFEST_NAME))
    self.assertEqual(self.convert(), first)
    self.assertEqual(os.path.getmtime(os.path.join(first, manifest_lib.MANIFEST_NAME)), stamp)

  def test_a_changed_folder_is_converted_again(self):
    first = self.convert()
    self.assertEqual(manifest_lib.load(first)["splits"]["train"]["num_examples"], 6)
    helpers.save(os.path.join(self.src, "cat", "new.png"), helpers.solid(8, 8, 90))
    with self.assertLogs("absl", "INFO") as logs:
      second = self.convert()
    self.assertNotEqual(second, first)
    self.assertTrue(any("changed since it was converted" in line for line in logs.output),
                    logs.output)
    self.assertEqual(manifest_lib.load(second)["splits"]["train"]["num_examples"], 7)
    self.assertEqual(_entries(self.cache_dir), [os.path.basename(second)])  # Stale one gone.
    # A file rewritten with other content and the same name counts too.
    time.sleep(0.01)
    helpers.save(os.path.join(self.src, "cat", "new.png"), helpers.solid(8, 8, 10))
    self.assertNotEqual(self.convert(), second)

  def test_other_settings_of_the_same_folder_are_kept(self):
    plain = self.convert()
    small = cache.ensure_converted(f"folder:{self.src}", cache_dir=self.cache_dir,
                                   image_size=4, num_workers=1)
    self.assertNotEqual(plain, small)
    self.assertEqual(_entries(self.cache_dir), sorted(map(os.path.basename, [plain, small])))

  def test_resolve(self):
    converted = self.convert()
    self.assertEqual(cache.resolve(converted), converted)  # A converted directory.
    self.assertEqual(cache.resolve(f"folder:{self.src}", cache_dir=self.cache_dir), converted)
    # A plain folder of images is the folder source.
    self.assertEqual(cache.resolve(self.src, cache_dir=self.cache_dir), converted)
    with self.assertRaisesRegex(ValueError, r"^--real '/nonexistent' is neither a directory"):
      cache.resolve("/nonexistent", flag="--real")
    with self.assertRaisesRegex(ValueError, r"^folder source '/nonexistent' does not exist"):
      cache.resolve("folder:/nonexistent", cache_dir=self.cache_dir)
    empty = os.path.join(self.tmp, "empty")
    os.makedirs(empty)
    with self.assertRaisesRegex(ValueError, "holds no images"):
      cache.resolve(f"folder:{empty}", cache_dir=self.cache_dir)
    self.assertFalse([n for n in _entries(self.cache_dir) if n.startswith("empty")])

  def test_medical_sources_are_refused_with_the_conversion_command(self):
    scan = os.path.join(self.tmp, "scans", "sub-01_T1w.nii.gz")
    os.makedirs(os.path.dirname(scan))
    with open(scan, "wb"):  # Refused unread: an empty file will do.
      pass
    converted = os.path.join(self.tmp, "scans", "sub-01_T1w-tfr")
    with self.assertRaisesRegex(
        ValueError, "^" + re.escape(
            f"--real 'nifti:{scan}' is a NIfTI source, which must be converted first (its "
            f"window and held-out patients are conversion settings): python -m pipeline.convert "
            f"--source=nifti:{scan} --output={converted} --window=auto --holdout=0.1 (choose "
            f"--window: CENTER,WIDTH, a preset such as ct_brain, or percentile:LOW,HIGH), then "
            f"--real={converted}") + "$"):
      cache.resolve(f"nifti:{scan}", cache_dir=self.cache_dir, flag="--real")
    for spec in ("dicom:/x", "unpaired:dicom:/a,/b", "paired:nifti:/a,/b"):
      with self.assertRaisesRegex(ValueError, "must be converted first"):
        cache.resolve(spec, cache_dir=self.cache_dir)
    self.assertFalse(os.path.exists(self.cache_dir))
    cache.refuse_medical("paired:/a,/b")  # Images: converted into the cache as before.


if __name__ == "__main__":
  tf.test.main()
