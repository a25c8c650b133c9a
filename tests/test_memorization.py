"""pipeline.evaluate --memorization: distances, copy ratios and the Fisher
test by hand; four generators (exact copies and noisy copies flagged, fresh
draws, a blurry mean image and an untrained generator not); data without a
test split is refused in one line (exit 2)."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image
import tensorflow as tf

from evaluation import audit_split
from evaluation import evaluate
from evaluation import memorization
from input import convert
from tests import helpers
from tests import test_evaluate
from tests import test_train
from training import run_dir
from training import samples as samples_lib
from training import trainer


class DistancesTest(tf.test.TestCase):

  def test_nearest_by_hand(self):
    queries = np.array([[0, 0], [6, 4], [10, 0], [3, 0]], np.float32)
    reference = np.array([[0, 3], [6, 8], [9, 0], [3, 4], [3, -4]], np.float32)
    # (0, 0): 3 to (0, 3), 5 to (3, +-4). (6, 4): 3 to (3, 4), 4 to (6, 8). (10, 0): 1 to
    # (9, 0), sqrt(65) to (3, +-4). (3, 0): 4 to (3, 4) and (3, -4), the first wins; sqrt(18)
    # to (0, 3).
    for chunk in (memorization.CHUNK_VALUES, 2, 4):  # Also chunks of 1 and 2 rows a side.
      d, i = memorization.nearest(queries, reference, k=3, chunk_values=chunk)
      self.assertAllClose(d, [[3.0, 5.0, 5.0], [3.0, 4.0, np.sqrt(25.0)],
                              [1.0, np.sqrt(65.0), np.sqrt(65.0)],
                              [4.0, 4.0, np.sqrt(18.0)]])
      self.assertAllEqual(i, [0, 3, 2, 3])
    d, _ = memorization.nearest(queries, reference, k=9)  # At most every reference row.
    self.assertEqual(d.shape, (4, 5))

  def test_squared_distances_of_integers_are_exact(self):
    a = np.array([[255, 0, 17]], np.uint8)
    b = np.array([[0, 255, 17], [255, 0, 17]], np.uint8)
    self.assertAllEqual(memorization.squared_distances(a, b), [[2 * 255**2, 0]])

  def test_copy_ratio_by_hand(self):
    ratio = memorization.copy_ratio([[0.0, 3.0, 6.0], [2.0, 2.0, 2.0], [1.0, 2.0, 6.0],
                                     [0.0, 0.0, 0.0]])
    self.assertAllClose(ratio, [0.0, 1.0, 1.0 / 3.0, 0.0])

  def test_fisher_exact_by_hand(self):
    # 3 events among 3 + 3: all 3 in the first group has probability 1 / C(6, 3).
    self.assertAllClose(memorization.fisher_greater(3, 3, 0, 3), 1 / 20)
    # At least 2 of 3 in the first group: (C(3,2) C(3,1) + 1) / 20.
    self.assertAllClose(memorization.fisher_greater(2, 3, 1, 3), 10 / 20)
    self.assertEqual(memorization.fisher_greater(0, 5, 2, 5), 1.0)

  def test_space_summary_and_verdict(self):
    sample = np.array([0.0, 0.1, 0.9, 0.8])
    test = np.array([0.7, 0.9, 1.0, 0.6])
    summary = memorization.space_summary(sample, test, np.array([0.0, 1.0, 2.0, 3.0]),
                                         np.ones(4))
    self.assertEqual((summary["copies"], summary["test_copies"]), (2, 0))
    self.assertAllClose(summary["p_value"], 6 / 28)  # C(4,2) / C(8,2).
    self.assertEqual(summary["sample_nn_median"], 1.5)
    at = {"p_value": memorization.P_VALUE}
    below = {"p_value": memorization.P_VALUE / 2}
    self.assertFalse(memorization.is_memorized({"feature": at, "pixel": at}))
    self.assertTrue(memorization.is_memorized({"feature": at, "pixel": below}))
    self.assertTrue(memorization.is_memorized({"feature": below, "pixel": at}))

  def test_audit_by_hand(self):
    # 1x1 gray images at 8 bits; level L is the value L / 127.5 - 1.
    def images(levels):
      return (np.array(levels, np.float32) / 127.5 - 1.0).reshape(-1, 1, 1, 1)
    audit = memorization.Audit((1, 1, 1), 255.0, k=2)
    audit.add_train(images([0, 51, 255]), np.array([[0.0], [1.0], [10.0]]))
    # Sample 0 copies train 1: ratio 0. Sample 1 (level 153): distances 102, 102, 153.
    audit.add_samples(images([51, 153]), np.array([[1.0], [5.0]]))
    # Held out (level 128): 77, 127, 128; features 20: 10, 19, 20.
    audit.add_test(images([128]), np.array([[20.0]]))
    png = os.path.join(self.create_tempdir().full_path, "pairs.png")
    report = audit.report(png)
    self.assertEqual((report["num_samples"], report["num_train"], report["num_test"],
                      report["neighbours"]), (2, 3, 1, 3))
    pixel, feature = report["pixel"], report["feature"]
    self.assertEqual((pixel["copies"], pixel["test_copies"]), (1, 0))
    self.assertAllClose(pixel["test_ratio_median"], 77 / ((77 + 127 + 128) / 3))
    self.assertAllClose(pixel["sample_ratio_median"], (0 + 102 / ((102 + 102 + 153) / 3)) / 2)
    self.assertAllClose(pixel["p_value"], 2 / 3)  # 1 event: in the samples 2 times in 3.
    self.assertAllClose(pixel["sample_nn_median"], (0 + 102 * 2 / 255) / 2)
    # Features: sample 0 is train 1's (0 to it), sample 1 (5): 4, 5, 5.
    self.assertEqual((feature["copies"], feature["test_copies"]), (1, 0))
    self.assertAllClose(feature["test_ratio_median"], 10 / ((10 + 19 + 20) / 3))
    self.assertFalse(report["memorized"])
    self.assertEqual([(p["sample"], p["train"]) for p in report["pairs"]], [(0, 1), (1, 1)])
    self.assertAllClose([p["pixel_ratio"] for p in report["pairs"]],
                        [0.0, 102 / ((102 + 102 + 153) / 3)])
    picture = np.asarray(Image.open(png))
    self.assertEqual(picture.shape, (2 * (1 + 2) + 2, 2 * (1 + 2) + 2, 3))  # 2 rows, 2 columns.
    self.assertAllEqual(picture[2, 2], [51, 51, 51])  # Sample 0 and its neighbour.
    self.assertAllEqual(picture[2, 5], [51, 51, 51])
    self.assertAllEqual(picture[5, 2], [153, 153, 153])  # Sample 1.

  def test_a_mean_image_near_every_training_image_is_not_a_copy(self):
    # Scans are anatomy plus noise: the mean image is nearer to every training
    # image than any held-out image is, so a nearest-distance rule (the one
    # this audit replaced) flags it; it is no nearer to one than to the others.
    rng = np.random.default_rng(0)
    template = rng.uniform(-0.5, 0.5, (1, 8, 8, 1))
    train, test = (np.clip(template + rng.normal(0, 0.2, (200, 8, 8, 1)), -1, 1)
                   for _ in range(2))
    samples = np.clip(template + rng.normal(0, 0.02, (200, 8, 8, 1)), -1, 1)
    audit = memorization.Audit((8, 8, 1), 65535.0)
    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731  (features = pixels)
    audit.add_train(train, flat(train))
    audit.add_samples(samples, flat(samples))
    audit.add_test(test, flat(test))
    report = audit.report()
    self.assertFalse(report["memorized"])
    self.assertEqual((report["pixel"]["copies"], report["feature"]["copies"]), (0, 0))
    self.assertGreater(report["pixel"]["sample_ratio_median"], 0.7)  # Measured: 0.83.
    # What fooled the old rule: every sample is nearer than the nearest held-out image.
    train_levels = memorization.to_levels(train, 65535.0)
    s_nn, _ = memorization.nearest(memorization.to_levels(samples, 65535.0), train_levels)
    t_nn, _ = memorization.nearest(memorization.to_levels(test, 65535.0), train_levels)
    self.assertLess(s_nn.max(), t_nn.min())
    # Copies of the same training images are flagged.
    copies = memorization.Audit((8, 8, 1), 65535.0)
    copies.add_train(train, flat(train))
    copies.add_samples(train[:100], flat(train[:100]))
    copies.add_test(test, flat(test))
    self.assertTrue(copies.report()["memorized"])

  def test_one_training_image_is_refused(self):
    audit = memorization.Audit((1, 1, 1), 255.0)
    audit.add_train(np.zeros((1, 1, 1, 1), np.float32), np.zeros((1, 1)))
    with self.assertRaisesRegex(ValueError, "at least two training images"):
      audit.add_test(np.zeros((1, 1, 1, 1), np.float32), np.zeros((1, 1)))

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
  classifier of tests/test_evaluate.py as the feature network: four kinds of
  generator, two that copy and two that do not."""

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
    if "samples" in kwargs:  # builtin:shapes has no patients to check.
      defaults.setdefault("trust_split", True)
    return evaluate.EvaluateConfig(**defaults)

  def audit_npz(self, x, **kwargs):
    npz = os.path.join(self.create_tempdir().full_path, "samples.npz")
    np.savez(npz, x=np.asarray(x, np.float32))
    return evaluate.run(self.config(samples=npz, **kwargs))["memorization"]

  def test_exact_copies_are_flagged(self):
    report = self.audit_npz(self.train_x[:200])
    self.assertTrue(report["memorized"])
    self.assertEqual(report["pixel"]["copies"], 200)
    self.assertLess(report["pixel"]["p_value"], 1e-30)
    self.assertEqual(report["pixel"]["sample_ratio_median"], 0.0)

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
    self.assertGreater(report["pixel"]["copies"], 190)  # Measured: 200.
    self.assertLess(report["pixel"]["test_copies"], 13)  # Measured: 5 of 256 (near-twins).
    # The held-out figures, brute force: RMS distances to the 50 nearest training images.
    rms = np.sqrt(((self.test_x[:, None] - self.train_x[None]) ** 2).mean(axis=(2, 3, 4)))
    nearest = np.sort(rms, axis=1)[:, :memorization.NEIGHBOURS]
    self.assertAllClose(report["pixel"]["test_nn_median"], np.median(nearest[:, 0]), atol=1e-6)
    self.assertAllClose(report["pixel"]["test_ratio_median"],
                        np.median(nearest[:, 0] / nearest.mean(axis=1)), atol=1e-3)
    # Each copy's nearest training image is its original; the picture shows them.
    pairs = report["pairs"]
    self.assertLen(pairs, 5)
    self.assertEqual([p["train"] for p in pairs], [p["sample"] for p in pairs])
    self.assertEqual([p["pixel_ratio"] for p in pairs], sorted(p["pixel_ratio"] for p in pairs))
    self.assertEqual(report["pairs_png"], os.path.join(tmp, "eval", memorization.PAIRS_NAME))
    picture = np.asarray(Image.open(report["pairs_png"]))
    self.assertEqual(picture.shape, (5 * 18 + 2, 2 * 18 + 2, 3))
    for row, p in enumerate(pairs):
      y = 2 + row * 18
      self.assertAllEqual(picture[y:y + 16, 2:18], samples_lib.to_uint8(copies[p["sample"]]))
      self.assertAllEqual(picture[y:y + 16, 20:36], samples_lib.to_uint8(self.train_x[p["train"]]))
    with open(out, encoding="utf-8") as f:
      self.assertEqual(json.load(f)["memorization"]["memorized"], True)

  def test_fresh_draws_are_not_flagged(self):
    # New shapes from the same generator, another seed: never in the training set.
    fresh_dir = os.path.join(self.create_tempdir().full_path, "fresh")
    convert.run(convert.ConvertConfig(source="builtin:shapes", output=fresh_dir, seed=11,
                                      image_size=16, max_examples=256, num_workers=1))
    fresh, _ = test_evaluate.real_arrays(fresh_dir)
    report = self.audit_npz(fresh)
    self.assertFalse(report["memorized"])
    for space in memorization.SPACES:
      self.assertGreater(report[space]["p_value"], 0.01, space)

  def test_a_blurry_mean_image_is_not_a_copy(self):
    # Close to every training image at once: what an untrained generator draws.
    rng = np.random.default_rng(1)
    mean = self.train_x.mean(axis=0, keepdims=True)
    report = self.audit_npz(np.clip(mean + rng.normal(0, 0.01, (200,) + mean.shape[1:]), -1, 1))
    self.assertFalse(report["memorized"])
    self.assertEqual(report["pixel"]["copies"], 0)
    self.assertLess(report["pixel"]["sample_nn_median"], report["pixel"]["test_nn_median"])

  def test_untrained_generator_is_not_flagged(self):
    run_dir = os.path.join(self.create_tempdir().full_path, "dcgan")
    trainer.run(test_train.tiny_config("dcgan", run_dir, train_steps=10, checkpoint_every=10,
                                       cpu_replicas=1, fresh=True))
    report = evaluate.run(self.config(model_dir=run_dir, num_samples=128))["memorization"]
    self.assertFalse(report["memorized"])
    self.assertEqual(report["num_samples"], 128)
    for space in memorization.SPACES:
      self.assertGreater(report[space]["p_value"], 0.01, space)
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


class AuditSplitTest(tf.test.TestCase):
  """The audit refuses, before anything slow, a held-out split that could
  share patients with the model's training images."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    root = os.path.join(tf.compat.v1.test.get_temp_dir(), "audit_split")
    src = os.path.join(root, "src")
    rng = np.random.default_rng(0)
    for p in range(6):  # One folder per patient.
      for j in range(4):
        helpers.save(os.path.join(src, f"P{p}", f"{j}.png"),
                     rng.integers(0, 255, (16, 16), dtype=np.uint8))
    cls.data = {}
    for name, kwargs in (("patient", dict(seed=0)), ("patient_seed5", dict(seed=5)),
                         ("file", dict(split_by="file"))):
      cls.data[name] = os.path.join(root, name)
      if not os.path.isdir(cls.data[name]):
        convert.run(convert.ConvertConfig(source=f"folder:{src}", output=cls.data[name],
                                          holdout=0.34, labels="none", num_workers=1,
                                          min_shards=1, **kwargs))
    cls.run_dir = os.path.join(root, "run")
    if not os.path.isdir(cls.run_dir):
      trainer.run(test_train.tiny_config("dcgan", cls.run_dir, data=cls.data["patient"],
                                         train_steps=1, cpu_replicas=1))
    cls.npz = os.path.join(root, "s.npz")
    np.savez(cls.npz, x=np.zeros((4, 16, 16, 1), np.float32))

  def check(self, **kwargs):
    config = evaluate.EvaluateConfig(memorization=True, features="x.keras", **kwargs)
    audit_split.check(config, evaluate.resolve_real(config))

  def test_a_split_by_file_is_refused(self):
    with self.assertRaisesRegex(ValueError, r"held out by --split_by=file: .*--trust_split"):
      self.check(real=self.data["file"], model_dir=self.run_dir)

  def test_samples_without_their_model_are_refused(self):
    with self.assertRaisesRegex(ValueError, "cannot tell which data the samples' model"):
      self.check(real=self.data["patient"], samples=self.npz)

  def test_another_split_of_the_same_patients_is_refused(self):
    with open(os.path.join(self.data["patient"], "manifest.json"), encoding="utf-8") as f:
      a = json.load(f)["holdout"]
    with open(os.path.join(self.data["patient_seed5"], "manifest.json"), encoding="utf-8") as f:
      b = json.load(f)["holdout"]
    self.assertNotEqual(a["test_groups"], b["test_groups"])
    with self.assertRaisesRegex(ValueError, "split another way"):
      self.check(real=self.data["patient_seed5"], model_dir=self.run_dir)

  def test_the_training_split_passes(self):
    self.check(real=self.data["patient"], model_dir=self.run_dir)  # No error.
    with self.assertLogs("absl", "INFO") as logs:
      self.check(real=self.data["patient"], model_dir=self.run_dir)
    self.assertIn("holds out patients", "\n".join(logs.output))

  def test_the_run_remembers_its_split_when_the_data_moves(self):
    _, info = run_dir.load_run(self.run_dir)
    with open(os.path.join(self.data["patient"], "manifest.json"), encoding="utf-8") as f:
      self.assertEqual(info.holdout, json.load(f)["holdout"])
    moved = os.path.join(self.create_tempdir().full_path, "run")
    shutil.copytree(self.run_dir, moved)
    config_path = os.path.join(moved, "config.json")
    with open(config_path, encoding="utf-8") as f:
      stored = json.load(f)
    stored["data"] = "/nonexistent/moved-away"
    with open(config_path, "w", encoding="utf-8") as f:
      json.dump(stored, f)
    self.check(real=self.data["patient"], model_dir=moved)  # No error.
    with self.assertRaisesRegex(ValueError, "split another way"):
      self.check(real=self.data["patient_seed5"], model_dir=moved)

  def test_cli_refuses_in_one_line_before_the_feature_network(self):
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.evaluate", f"--real={self.data['file']}",
         f"--model_dir={self.run_dir}", "--memorization"], env=helpers.subprocess_env(),
        cwd=helpers.REPO_ROOT, capture_output=True, text=True, timeout=300)
    self.assertEqual(done.returncode, 2, done.stderr)
    last = done.stderr.strip().splitlines()[-1]
    self.assertRegex(last, r"^evaluate: error: --memorization needs held-out patients, but .* "
                           r"held out by --split_by=file")
    self.assertNotIn("nception", done.stderr)


if __name__ == "__main__":
  tf.test.main()
