"""pipeline.evaluate end to end: real data against itself, samples from a .npz,
a folder and a run directory, the statistics cache, 2-D mode coverage, the
CLI; and (slow) FID of a trained sngan against its initial weights."""

import dataclasses
import hashlib
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import algorithms
from evaluation import evaluate
from evaluation import features
from inference import sampling
from input import cache
from input import manifest as manifest_lib
from input import reader
from tests import helpers
from tests import test_train
from training import config as config_lib
from training import data as data_lib
from training import samples as samples_lib
from training import trainer


def real_arrays(data_dir, split="train", key="image"):
  """Every example of a split, in shard order, with labels (or None)."""
  ds = reader.make_dataset(reader.ReaderConfig(data_dir, split=split, shuffle_buffer=0,
                                               repeat=False, drop_remainder=False,
                                               deterministic=True), 256)
  xs, ys = [], []
  for batch in ds.as_numpy_iterator():
    xs.append(batch[key])
    if "label" in batch:
      ys.append(batch["label"])
  return np.concatenate(xs), (np.concatenate(ys) if ys else None)


def train_feature_classifier(data_dir, path, epochs=15, seed=0):
  """A small shape classifier trained on the real images; its 32-d embedding
  layer is the feature network (the issue's 'feature network trained by the
  test on the real data'). Returns its accuracy on the test split."""
  x, y = real_arrays(data_dir)
  keras.utils.set_random_seed(seed)
  model = keras.Sequential([
      keras.layers.Input(x.shape[1:]),
      keras.layers.Conv2D(16, 3, activation="relu", padding="same"),
      keras.layers.MaxPooling2D(),
      keras.layers.Conv2D(32, 3, activation="relu", padding="same"),
      keras.layers.MaxPooling2D(),
      keras.layers.Conv2D(64, 3, activation="relu", padding="same"),
      keras.layers.GlobalMaxPooling2D(),
      keras.layers.Dense(32, activation="relu", name="embedding"),
      keras.layers.Dense(int(y.max()) + 1, name="logits"),
  ])
  model.compile(keras.optimizers.Adam(2e-3),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
  model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
  model.save(path)
  test_x, test_y = real_arrays(data_dir, "test")
  return model.evaluate(test_x, test_y, verbose=0)[1]


class EvaluateTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    root = os.path.join(tf.compat.v1.test.get_temp_dir(), "evaluate")
    os.makedirs(root, exist_ok=True)
    cls.root = root
    cls.data = test_train.small_data("shapes")  # 256 train images, 16 px.
    cls.classifier = os.path.join(root, "classifier.keras")
    if not os.path.isfile(cls.classifier):
      train_feature_classifier(cls.data, cls.classifier, epochs=2)
    cls.real_x, _ = real_arrays(cls.data)

  def config(self, **kwargs):
    defaults = dict(real=self.data, features=self.classifier, num_real=0, batch_size=64,
                    kid_subsets=10, kid_subset_size=100,
                    stats_cache=os.path.join(self.create_tempdir().full_path, "cache"))
    defaults.update(kwargs)
    return evaluate.EvaluateConfig(**defaults)

  def test_real_against_itself(self):
    npz = os.path.join(self.create_tempdir().full_path, "real.npz")
    np.savez(npz, x=self.real_x)
    out = os.path.join(self.create_tempdir().full_path, "eval.json")
    result = evaluate.run(self.config(samples=npz, output=out, num_samples=10_000))
    m, p = result["metrics"], result["protocol"]
    self.assertLess(m["fid"], 1e-6)
    self.assertEqual((m["precision"], m["recall"]), (1.0, 1.0))
    self.assertLess(abs(m["kid"]), 3 * m["kid_stderr"] + 1e-9)
    self.assertIn("inception_score", m)  # The classifier has a head.
    self.assertEqual((p["num_real"], p["num_fake"]), (256, 256))
    with open(out, encoding="utf-8") as f:
      written = json.load(f)
    net = written["protocol"]["feature_network"]
    self.assertEqual(net["weights_sha256"], features.sha256_of_path(self.classifier))
    self.assertEqual(net["resize"], features.RESIZE_METHOD)
    self.assertEqual(net["layer"], "embedding")
    self.assertEqual(written["protocol"]["seed"], 0)
    self.assertEqual(written["protocol"]["fake_quantization"], "8-bit")
    with open(os.path.join(self.data, manifest_lib.MANIFEST_NAME), "rb") as f:
      self.assertEqual(written["protocol"]["real"]["manifest_sha256"],
                       hashlib.sha256(f.read()).hexdigest())

  def test_npz_folder_and_cache(self):
    # Noisy real images: the PNG folder holds exactly what the .npz holds
    # after 8-bit quantization, so the figures agree.
    rng = np.random.default_rng(0)
    x = np.clip(self.real_x[:100] + rng.normal(0, 0.3, self.real_x[:100].shape), -1, 1)
    tmp = self.create_tempdir().full_path
    npz, folder = os.path.join(tmp, "s.npz"), os.path.join(tmp, "pngs")
    np.savez(npz, x=x)
    os.makedirs(folder)
    for i, img in enumerate(x):
      samples_lib.save_png(os.path.join(folder, f"{i:03d}.png"),
                           samples_lib.to_uint8(img))
    cache = os.path.join(tmp, "cache")
    a = evaluate.run(self.config(samples=npz, stats_cache=cache))
    b = evaluate.run(self.config(samples=folder, stats_cache=cache))
    self.assertFalse(a["cache"]["hit"])
    self.assertTrue(b["cache"]["hit"])
    self.assertEqual(a["cache"]["path"], b["cache"]["path"])
    for key in ("fid", "kid", "precision", "recall"):
      self.assertAllClose(a["metrics"][key], b["metrics"][key], rtol=1e-5, atol=1e-7, msg=key)
    self.assertGreater(a["metrics"]["fid"], 1e-3)
    # Another count of real examples is another cache entry.
    c = evaluate.run(self.config(samples=npz, stats_cache=cache, num_real=100))
    self.assertFalse(c["cache"]["hit"])
    self.assertEqual(c["protocol"]["num_real"], 100)

  def test_model_dir(self):
    run_dir = os.path.join(self.root, "dcgan_run")
    trainer.run(test_train.tiny_config("dcgan", run_dir, train_steps=1, checkpoint_every=1,
                                       cpu_replicas=1, fresh=True))
    result = evaluate.run(self.config(model_dir=run_dir, num_samples=64, seed=3))
    self.assertEqual(result["protocol"]["fake"]["step"], 1)
    self.assertEqual(result["protocol"]["num_fake"], 64)
    self.assertGreater(result["metrics"]["fid"], 0.0)
    # The same seed gives the same figures.
    again = evaluate.run(self.config(model_dir=run_dir, num_samples=64, seed=3))
    self.assertEqual(again["metrics"]["fid"], result["metrics"]["fid"])

  def test_vector_data_reports_mode_coverage(self):
    data = test_train.small_data("ring2d")
    centers = np.asarray(manifest_lib.load(data)["builtin"]["centers"])
    rng = np.random.default_rng(0)
    tmp = self.create_tempdir().full_path
    good = centers[np.arange(2500) % 8] + rng.normal(0, 0.02, (2500, 2))
    collapsed = centers[np.zeros(2500, int)] + rng.normal(0, 0.02, (2500, 2))
    results = {}
    for name, x in (("good", good), ("collapsed", collapsed)):
      np.savez(os.path.join(tmp, f"{name}.npz"), x=x.astype(np.float32))
      results[name] = evaluate.run(self.config(real=data, samples=os.path.join(tmp,
                                                                                f"{name}.npz")))
    self.assertEqual(results["good"]["metrics"]["modes"], 8)
    self.assertEqual(results["good"]["metrics"]["num_modes"], 8)
    self.assertGreater(results["good"]["metrics"]["high_quality"], 0.95)
    self.assertEqual(results["collapsed"]["metrics"]["modes"], 1)
    self.assertLess(results["collapsed"]["metrics"]["recall"],
                    results["good"]["metrics"]["recall"])
    self.assertEqual(results["good"]["protocol"]["feature_network"]["features"], "identity")

  def test_errors(self):
    with self.assertRaisesRegex(ValueError, "exactly one of --model_dir, --samples and --pairs"):
      evaluate.run(self.config())
    npz = os.path.join(self.create_tempdir().full_path, "bad.npz")
    np.savez(npz, x=np.zeros((4, 8, 8, 3), np.float32))
    with self.assertRaisesRegex(ValueError, r"holds \(8, 8, 3\) samples but --real has "
                                            r"\(16, 16, 3\)"):
      evaluate.run(self.config(samples=npz))
    with self.assertRaisesRegex(ValueError, "has no split 'nope'; it has test, train"):
      evaluate.run(self.config(samples=npz, real_split="nope"))
    with self.assertRaisesRegex(features.FeatureNetworkError, "curl -L -o"):
      evaluate.run(self.config(samples=npz, features="inception",
                               inception_weights="/nonexistent/w.h5"))
    # The inputs named on the command line are checked before the (online)
    # feature network and before any conversion.
    with self.assertRaisesRegex(ValueError, "^--samples '/nonexistent.npz' does not exist$"):
      evaluate.run(self.config(samples="/nonexistent.npz", features="inception",
                               inception_weights="/nonexistent/w.h5"))
    with self.assertRaisesRegex(ValueError, "is not a run directory of pipeline.train"):
      evaluate.run(self.config(model_dir=self.create_tempdir().full_path, features="inception"))
    with self.assertRaisesRegex(ValueError, "^--real '/nonexistent' does not exist$"):
      evaluate.run(dataclasses.replace(self.config(samples=npz, features="inception"),
                                       real="/nonexistent"))

  def test_cli(self):
    npz = os.path.join(self.create_tempdir().full_path, "real.npz")
    np.savez(npz, x=self.real_x[:64])
    out = os.path.join(self.create_tempdir().full_path, "eval.json")
    cache = os.path.join(self.create_tempdir().full_path, "cache")
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "pipeline.evaluate", f"--real={self.data}", *args],
        env=helpers.subprocess_env(), cwd=helpers.REPO_ROOT, capture_output=True, text=True,
        timeout=300)
    done = run(f"--samples={npz}", f"--features={self.classifier}", "--kid_subsets=5",
               "--kid_subset_size=50", f"--stats_cache={cache}", f"--output={out}")
    self.assertEqual(done.returncode, 0, done.stderr)
    self.assertRegex(done.stdout, r"64 generated vs 256 real samples")
    self.assertRegex(done.stdout, r"\nfid: [0-9.e-]+\n")
    with open(out, encoding="utf-8") as f:
      self.assertEqual(json.load(f)["protocol"]["num_fake"], 64)
    bad = run(f"--samples={npz}", "--inception_weights=/nonexistent/w.h5")
    self.assertEqual(bad.returncode, 2)
    self.assertIn(features.INCEPTION_WEIGHTS_URL, bad.stderr)
    missing = run("--samples=/nonexistent.npz")  # Not a word about the Inception weights.
    self.assertEqual(missing.returncode, 2)
    self.assertEqual(missing.stderr.strip().splitlines()[-1],
                     "evaluate: error: --samples '/nonexistent.npz' does not exist")
    self.assertNotIn("nception", missing.stderr)


class TrainedBeatsInitialTest(tf.test.TestCase):
  """The issue's 'must be shown': on builtin:shapes, FID with a feature network
  trained here on the real data is far lower for a trained sngan than for its
  initial weights. Trains for about 40 s, 90 s in all, on 2 CPU cores.

  2,000 steps, not 600: after 600 steps the FID of this small sngan swings
  between seeds and machines (measured 2026-12-04, float32, seeds 0/1/2: 228,
  163, 428, against about 466 at the initial weights; CI failed at 253 on a
  bfloat16 machine). After 2,000 steps: 105, 221, 115. Precision is pinned to
  float32: `auto` picks mixed_bfloat16 on CPUs with native bfloat16 only, so
  the test would run other arithmetic on other machines.
  """

  @pytest.mark.slow
  def test_sngan_fid_drops_with_training(self):
    tmp = self.create_tempdir().full_path
    data = cache.ensure_builtin("shapes", cache_dir=os.path.join(tmp, "data"),
                                  image_size=16, max_examples=2000, num_workers=1)
    classifier = os.path.join(tmp, "classifier.keras")
    accuracy = train_feature_classifier(data, classifier)
    self.assertGreater(accuracy, 0.9)
    cfg = config_lib.TrainConfig(
        algo="sngan", data=data, model_dir=os.path.join(tmp, "sngan"), train_steps=2000,
        global_batch_size=64, base_channels=16, z_dim=32, steps_per_loop=50, log_every=500,
        sample_every=10_000, checkpoint_every=10_000, cpu_replicas=1, seed=0,
        precision="float32")
    # The initial weights: the trainer's own initialization (same seed), no step.
    algo_cls = algorithms.get("sngan")
    data_info = data_lib.describe(manifest_lib.load(data), data)
    initial = algo_cls(algo_cls.resolve(cfg, data_info), data_info)
    keras.utils.set_random_seed(cfg.seed)
    initial.build()
    init_npz = os.path.join(tmp, "initial.npz")
    np.savez(init_npz, x=sampling.sample(initial, 2000, seed=1)[0])
    trainer.run(cfg)
    common = dict(real=data, features=classifier, num_real=2000, num_samples=2000, seed=1,
                  stats_cache=os.path.join(tmp, "cache"))
    before = evaluate.run(evaluate.EvaluateConfig(samples=init_npz, **common))["metrics"]
    after = evaluate.run(evaluate.EvaluateConfig(model_dir=cfg.model_dir, **common))["metrics"]
    print(f"\nshapes 16px, sngan 2,000 steps; classifier accuracy {accuracy:.3f}; "
          f"initial: {json.dumps(before)}; trained: {json.dumps(after)}")
    self.assertLess(after["fid"], 0.5 * before["fid"])  # Measured: 92 vs 515 (2026-12-04).
    self.assertLess(after["kid"], before["kid"])


if __name__ == "__main__":
  tf.test.main()
