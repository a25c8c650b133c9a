"""Sample quality after real training runs (slow: the second CI stage).

- grid2d (25 modes, sigma 0.05, spacing 2; the PacGAN/VEEGAN protocol):
  wgan_gp and sngan cover all 25 modes with >= 90% of 2,500 samples within
  3 sigma of a mode (training/mode_coverage.py). VEEGAN reported 24.6 modes /
  40% high quality, PacGAN2 23.8 modes / 91%.
- shapes: a shape classifier trained here on real data labels >= 90% of
  cdcgan samples as the class they were conditioned on; unconditional sngan
  samples are not collapsed (every class >= 15%).

Figures are printed (pytest -s shows them) and collected in bench/results/.
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from input import convert
from input import manifest as manifest_lib
from input import reader
from training import config as config_lib
from training import mode_coverage
from training import sampling
from training import trainer

pytestmark = pytest.mark.slow

# Settings that reach the targets on a 2-core CPU in a few minutes each.
GRID_RUNS = {
    "wgan_gp": dict(train_steps=4000, global_batch_size=256, z_dim=2, lr_g=1e-4, lr_d=1e-4),
    "sngan": dict(train_steps=4000, global_batch_size=256, z_dim=2),
}


def _data(name, **kwargs):
  return convert.ensure_builtin(name, cache_dir=os.path.join(
      tf.compat.v1.test.get_temp_dir(), "quality_data"), **kwargs)


def grid_figures(algo, model_dir, **overrides):
  """Trains `algo` on grid2d; returns mode_coverage.mode_stats of 2,500 samples."""
  data = _data("grid2d")
  settings = dict(algo=algo, data=data, model_dir=model_dir, log_every=500,
                  sample_every=1000, checkpoint_every=100000, steps_per_loop=50)
  settings.update(GRID_RUNS.get(algo, dict(train_steps=4000, global_batch_size=256, z_dim=2)))
  settings.update(overrides)
  result = trainer.run(config_lib.TrainConfig(**settings))
  x, _ = sampling.sample(result.algorithm, 2500, seed=1)
  m = manifest_lib.load(data)
  return mode_coverage.mode_stats(x, m["builtin"]["centers"], m["builtin"]["std"])


def train_shape_classifier(data_dir, epochs=3):
  """A small CNN trained on real builtin:shapes; returns (model, test accuracy)."""
  keras.utils.set_random_seed(0)
  model = keras.Sequential([
      keras.layers.Input((32, 32, 3)),
      keras.layers.Conv2D(16, 3, activation="relu", padding="same"),
      keras.layers.MaxPooling2D(),
      keras.layers.Conv2D(32, 3, activation="relu", padding="same"),
      keras.layers.MaxPooling2D(),
      keras.layers.Conv2D(64, 3, activation="relu", padding="same"),
      keras.layers.GlobalMaxPooling2D(),
      keras.layers.Dense(3),
  ])
  model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])

  def split(name, repeat):
    ds = reader.make_dataset(reader.ReaderConfig(data_dir, split=name, repeat=repeat,
                                                 drop_remainder=False), 64)
    return ds.map(lambda b: (b["image"], b["label"]))

  model.fit(split("train", False), epochs=epochs, verbose=0)
  _, accuracy = model.evaluate(split("test", False), verbose=0)
  return model, accuracy


class Grid2DTest(tf.test.TestCase):

  def test_wgan_gp_and_sngan_cover_all_modes(self):
    for algo in ("wgan_gp", "sngan"):
      with self.subTest(algo=algo):
        stats = grid_figures(algo, os.path.join(self.create_tempdir().full_path, algo))
        print(f"grid2d {algo}: {stats['modes']}/25 modes, "
              f"{stats['high_quality']:.1%} high quality")
        self.assertEqual(stats["modes"], 25, stats)
        self.assertGreaterEqual(stats["high_quality"], 0.90, stats)


class ShapesTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.data = _data("shapes")
    cls.classifier, cls.accuracy = train_shape_classifier(cls.data)

  def test_classifier_is_reliable(self):
    self.assertGreaterEqual(self.accuracy, 0.97)

  def test_cdcgan_samples_have_their_class(self):
    tmp = self.create_tempdir().full_path
    result = trainer.run(config_lib.TrainConfig(
        algo="cdcgan", data=self.data, model_dir=tmp, train_steps=1500, base_channels=32,
        log_every=250, sample_every=500, checkpoint_every=100000))
    x, y = sampling.sample(result.algorithm, 600, seed=1)
    predicted = np.argmax(self.classifier.predict(x, verbose=0), axis=1)
    agreement = float(np.mean(predicted == y))
    print(f"shapes cdcgan: {agreement:.1%} of samples classified as their condition "
          f"(classifier test accuracy {self.accuracy:.1%})")
    self.assertGreaterEqual(agreement, 0.90)

  def test_sngan_samples_are_not_collapsed(self):
    tmp = self.create_tempdir().full_path
    result = trainer.run(config_lib.TrainConfig(
        algo="sngan", data=self.data, model_dir=tmp, train_steps=1500, base_channels=32,
        log_every=250, sample_every=500, checkpoint_every=100000))
    x, _ = sampling.sample(result.algorithm, 600, seed=1)
    predicted = np.argmax(self.classifier.predict(x, verbose=0), axis=1)
    shares = np.bincount(predicted, minlength=3) / len(predicted)
    print(f"shapes sngan: class shares {np.round(shares, 3).tolist()}")
    self.assertGreaterEqual(float(shares.min()), 0.15, shares)


if __name__ == "__main__":
  tf.test.main()
