"""pipeline.evaluate --memorization: nearest-train distances and the fraction
below the held-out 1st percentile by hand; noisy copies of training images
are flagged, a briefly trained generator is not; data without a test split is
refused in one line (exit 2)."""

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import tensorflow as tf

from evaluation import evaluate
from evaluation import memorization
from input import convert
from tests import helpers
from tests import test_evaluate
from tests import test_train
from training import samples as samples_lib
from training import trainer


class DistancesTest(tf.test.TestCase):

  def test_nearest_by_hand(self):
    queries = np.array([[0, 0], [6, 4], [10, 0], [3, 0]], np.float32)
    reference = np.array([[0, 3], [6, 8], [9, 0], [3, 4], [3, -4]], np.float32)
    # (0, 0): 3 to (0, 3), 5 to (3, +-4). (6, 4): 3 to (3, 4), 4 to (6, 8). (10, 0): 1 to
    # (9, 0). (3, 0): 4 to (3, 4) and (3, -4), the first wins; sqrt(18) to (0, 3).
    for chunk in (memorization.CHUNK_VALUES, 2, 4):  # Also chunks of 1 and 2 rows a side.
      d, i = memorization.nearest(queries, reference, chunk_values=chunk)
      self.assertAllEqual(d, [3.0, 3.0, 1.0, 4.0])
      self.assertAllEqual(i, [0, 3, 2, 3])

  def test_squared_distances_of_integers_are_exact(self):
    a = np.array([[255, 0, 17]], np.uint8)
    b = np.array([[0, 255, 17], [255, 0, 17]], np.uint8)
    self.assertAllEqual(memorization.squared_distances(a, b), [[2 * 255**2, 0]])

  def test_fraction_below_the_held_out_first_percentile(self):
    test_nn = np.arange(101.0)  # The 1st percentile of 0..100 is 1.0.
    summary = memorization.space_summary(np.array([0.0, 0.5, 1.0, 2.0, 50.0]), test_nn)
    self.assertEqual(summary, {"sample_nn_median": 1.0, "test_nn_median": 50.0,
                               "test_p01": 1.0,
                               "fraction_below_test_p01": 0.4})  # 0 and 0.5; 1.0 is not below.
    # Two held-out distances: numpy's linear interpolation, 0 + 0.01 * (10 - 0).
    summary = memorization.space_summary(np.array([0.05, 0.1, 5.0]), np.array([0.0, 10.0]))
    self.assertAllClose(summary["test_p01"], 0.1)
    self.assertAllClose(summary["fraction_below_test_p01"], 1 / 3)

  def test_memorized_above_five_percent_in_either_space(self):
    at = {"fraction_below_test_p01": memorization.MEMORIZED_FRACTION}
    above = {"fraction_below_test_p01": 0.06}
    self.assertFalse(memorization.is_memorized({"feature": at, "pixel": at}))
    self.assertTrue(memorization.is_memorized({"feature": at, "pixel": above}))
    self.assertTrue(memorization.is_memorized({"feature": above, "pixel": at}))

  def test_audit_by_hand(self):
    # 2x2 gray images. Train: all -1, all +1. Pixel distances are RMS.
    train = np.stack([np.full((2, 2, 1), -1.0), np.full((2, 2, 1), 1.0)]).astype(np.float32)
    audit = memorization.Audit((2, 2, 1), 255.0, k=2)
    audit.add_train(train, np.array([[0.0, 0.0], [10.0, 0.0]]))
    one_pixel = np.full((2, 2, 1), -1.0, np.float32)
    one_pixel[0, 0, 0] = 1.0  # L2 2 from train 0: RMS 2 / sqrt(4) = 1.
    audit.add_samples(np.stack([np.full((2, 2, 1), 1.0), one_pixel]),
                      np.array([[10.0, 3.0], [0.0, 4.0]]))
    audit.add_samples(np.full((1, 2, 2, 1), 0.6), np.array([[6.0, 8.0]]))  # Level 204.
    held_out = np.stack([np.full((2, 2, 1), -1.0)] * 3 + [np.full((2, 2, 1), 0.0)])
    audit.add_test(held_out.astype(np.float32), np.array([[0.0, 1.0]] * 4))
    png = os.path.join(self.create_tempdir().full_path, "pairs.png")
    report = audit.report(png)
    level = 2.0 / 255
    self.assertEqual((report["num_samples"], report["num_train"], report["num_test"]), (3, 2, 4))
    # Samples' nearest pixels: 0, 1, (255 - 204) levels; held out: 0, 0, 0, 128 levels.
    self.assertAllClose(report["pixel"]["sample_nn_median"], 51 * level)
    self.assertEqual(report["pixel"]["test_nn_median"], 0.0)
    self.assertAllClose(report["pixel"]["test_p01"], 0.0)
    self.assertEqual(report["pixel"]["fraction_below_test_p01"], 0.0)
    # Features: samples 3, 4, 8 (to (10, 0), (0, 0), (10, 0)); held out 1 each.
    self.assertAllClose(report["feature"]["sample_nn_median"], 4.0)
    self.assertAllClose(report["feature"]["test_p01"], 1.0)
    self.assertEqual(report["feature"]["fraction_below_test_p01"], 0.0)
    self.assertFalse(report["memorized"])
    self.assertEqual([(p["sample"], p["train"]) for p in report["pairs"]], [(0, 1), (2, 1)])
    self.assertAllClose([p["pixel"] for p in report["pairs"]], [0.0, 51 * level])
    picture = np.asarray(Image.open(png))
    self.assertEqual(picture.shape, (2 * (2 + 2) + 2, 2 * (2 + 2) + 2, 3))  # 2 rows, 2 columns.
    self.assertAllEqual(picture[2:4, 2:4], np.full((2, 2, 3), 255))  # Sample 0 (+1).
    self.assertAllEqual(picture[6:8, 2:4], np.full((2, 2, 3), 204))  # Sample 2 (0.6).
    self.assertAllEqual(picture[6:8, 6:8], np.full((2, 2, 3), 255))  # Its neighbour, train 1.

  def test_splits(self):
    splits = lambda *names: {"kind": "image", "splits": dict.fromkeys(names, {})}  # noqa: E731
    self.assertEqual(memorization.split_names(splits("train", "test"), "train"),
                     ("train", "test"))
    unpaired = dict(splits("trainA", "trainB", "testA", "testB"), kind="unpaired")
    self.assertEqual(memorization.split_names(unpaired, "testB"), ("trainB", "testB"))
    with self.assertRaisesRegex(ValueError, r"^--memorization needs held-out images \(split "
                                            r"'test'\), but 'ct' has only train: convert the "
                                            r"source again with --holdout=FRACTION [^\n]*$"):
      memorization.split_names(splits("train"), "train", "ct")
    with self.assertRaisesRegex(ValueError, "2-D vector data"):
      memorization.split_names(dict(splits("train", "test"), kind="vector"), "train")


class AuditTest(tf.test.TestCase):
  """On builtin:shapes at 16 px (256 train, 256 test images) with the shape
  classifier of tests/test_evaluate.py as the feature network."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    root = os.path.join(tf.compat.v1.test.get_temp_dir(), "evaluate")  # Shared with it.
    os.makedirs(root, exist_ok=True)
    cls.data = test_train.small_data("shapes")
    cls.classifier = os.path.join(root, "classifier.keras")
    if not os.path.isfile(cls.classifier):
      test_evaluate.train_feature_classifier(cls.data, cls.classifier, epochs=2)
    cls.train_x, _ = test_evaluate.real_arrays(cls.data)
    cls.test_x, _ = test_evaluate.real_arrays(cls.data, "test")

  def config(self, **kwargs):
    defaults = dict(real=self.data, features=self.classifier, num_real=0, batch_size=64,
                    kid_subsets=5, kid_subset_size=50, memorization=True, cache_stats=False)
    defaults.update(kwargs)
    return evaluate.EvaluateConfig(**defaults)

  def test_noisy_copies_of_training_images_are_flagged(self):
    rng = np.random.default_rng(0)
    copies = np.clip(self.train_x[:200] + rng.normal(0, 0.02, self.train_x[:200].shape), -1, 1)
    tmp = self.create_tempdir().full_path
    npz, out = os.path.join(tmp, "copies.npz"), os.path.join(tmp, "eval", "eval.json")
    np.savez(npz, x=copies.astype(np.float32))
    # --num_real caps the metrics' real examples, not the audit's: every train and test image.
    result = evaluate.run(self.config(samples=npz, output=out, memorization_k=5, num_real=100))
    report = result["memorization"]
    self.assertTrue(report["memorized"])
    self.assertEqual((report["num_samples"], report["num_train"], report["num_test"]),
                     (200, 256, 256))
    self.assertGreater(report["pixel"]["fraction_below_test_p01"], 0.95)  # Measured: 1.0.
    self.assertGreater(report["feature"]["fraction_below_test_p01"], 0.9)  # Measured: 1.0.
    # The held-out figures, brute force: RMS distance to the nearest training image.
    rms = np.sqrt(((self.test_x[:, None] - self.train_x[None]) ** 2).mean(axis=(2, 3, 4)))
    self.assertAllClose(report["pixel"]["test_nn_median"], np.median(rms.min(axis=1)))
    self.assertAllClose(report["pixel"]["test_p01"], np.percentile(rms.min(axis=1), 1))
    # Each copy's nearest training image is its original; the picture shows them.
    pairs = report["pairs"]
    self.assertLen(pairs, 5)
    self.assertEqual([p["train"] for p in pairs], [p["sample"] for p in pairs])
    self.assertEqual([p["pixel"] for p in pairs], sorted(p["pixel"] for p in pairs))
    self.assertEqual(report["pairs_png"], os.path.join(tmp, "eval", memorization.PAIRS_NAME))
    picture = np.asarray(Image.open(report["pairs_png"]))
    self.assertEqual(picture.shape, (5 * 18 + 2, 2 * 18 + 2, 3))
    for row, p in enumerate(pairs):
      y = 2 + row * 18
      self.assertAllEqual(picture[y:y + 16, 2:18], samples_lib.to_uint8(copies[p["sample"]]))
      self.assertAllEqual(picture[y:y + 16, 20:36], samples_lib.to_uint8(self.train_x[p["train"]]))
    with open(out, encoding="utf-8") as f:
      self.assertEqual(json.load(f)["memorization"]["memorized"], True)

  def test_held_out_images_as_samples_score_chance(self):
    # Samples from the data distribution that the generator never saw: the
    # 1st percentile of 256 distances lies between the 3rd and 4th smallest.
    npz = os.path.join(self.create_tempdir().full_path, "test.npz")
    np.savez(npz, x=self.test_x)
    report = evaluate.run(self.config(samples=npz))["memorization"]
    self.assertFalse(report["memorized"])
    for space in memorization.SPACES:
      self.assertEqual(report[space]["fraction_below_test_p01"], 3 / 256, space)
      self.assertEqual(report[space]["sample_nn_median"], report[space]["test_nn_median"])

  def test_briefly_trained_generator_is_not_flagged(self):
    run_dir = os.path.join(self.create_tempdir().full_path, "dcgan")
    trainer.run(test_train.tiny_config("dcgan", run_dir, train_steps=10, checkpoint_every=10,
                                       cpu_replicas=1, fresh=True))
    report = evaluate.run(self.config(model_dir=run_dir, num_samples=128))["memorization"]
    self.assertFalse(report["memorized"])
    self.assertEqual(report["num_samples"], 128)
    for space in memorization.SPACES:
      self.assertLessEqual(report[space]["fraction_below_test_p01"],
                           memorization.MEMORIZED_FRACTION, space)
      self.assertGreater(report[space]["sample_nn_median"], report[space]["test_nn_median"])
    self.assertIsNone(report["pairs_png"])  # No --output, no picture.

  def test_cli_refuses_data_without_a_test_split_in_one_line(self):
    tmp = self.create_tempdir().full_path
    data = os.path.join(tmp, "data")
    src = helpers.make_class_folder(os.path.join(tmp, "src"))  # 12 images, no test split.
    convert.run(convert.ConvertConfig(source=f"folder:{src}", output=data, num_workers=1))
    npz = os.path.join(tmp, "s.npz")
    np.savez(npz, x=np.zeros((4, 8, 8, 3), np.float32))
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.evaluate", f"--real={data}", f"--samples={npz}",
         "--memorization"], env=helpers.subprocess_env(), cwd=helpers.REPO_ROOT,
        capture_output=True, text=True, timeout=300)
    self.assertEqual(done.returncode, 2, done.stderr)
    # The last line (TensorFlow may log before it), and before the feature network.
    self.assertEqual(done.stderr.strip().splitlines()[-1],
                     f"evaluate: error: --memorization needs held-out images (split 'test'), "
                     f"but {data!r} has only train: convert the source again with "
                     "--holdout=FRACTION (e.g. --holdout=0.1, patients held out whole)")
    self.assertNotIn("nception", done.stderr)
    self.assertEqual(done.stdout, "")


if __name__ == "__main__":
  tf.test.main()
