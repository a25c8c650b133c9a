"""Each algorithm says what it does once trained (`Algorithm.inference`), and
evaluation/ and inference/ ask it rather than its class: every registered
algorithm answers, and a family defined here, outside algorithms/ and no
subclass of `translation.Translation`, is evaluated, exported and applied as
a translation model because it says it is one."""

import dataclasses
import os
from unittest import mock

from absl.testing import parameterized
import keras
import numpy as np
from PIL import Image
import tensorflow as tf

import algorithms
from evaluation import during_training
from evaluation import evaluate
from inference import export
from inference import sampling
from inference import translate
from input import manifest as manifest_lib
from tests import test_translation
from training import config as config_lib


class EveryAlgorithmAnswersTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(*algorithms.names())
  def test_declares_what_it_does_and_has_its_methods(self, name):
    cls = algorithms.get(name)
    self.assertIn(cls.inference, algorithms.INFERENCE_KINDS)
    base = algorithms.Algorithm
    if cls.inference == algorithms.SAMPLING:
      self.assertIsNot(cls.sample, base.sample, name)
    else:
      self.assertIsNot(cls.translate, base.translate, name)
      self.assertIsNot(cls.translation_networks, base.translation_networks, name)

  def test_names_by_kind(self):
    self.assertEqual(algorithms.names(algorithms.TRANSLATION), ["cyclegan", "pix2pix", "unit"])
    self.assertEqual(sorted(algorithms.names(algorithms.SAMPLING)
                            + algorithms.names(algorithms.TRANSLATION)), algorithms.names())
    self.assertIn("sngan", algorithms.names(algorithms.SAMPLING))

  def test_translation_direction(self):
    data = algorithms.DataInfo("paired", (32, 32, 3), 0, "tiny")

    def direction(algo, requested, trained="AtoB"):
      config = config_lib.TrainConfig(algo=algo, direction=trained)
      return algorithms.get(algo)(config, data).translation_direction(requested)

    self.assertEqual(direction("pix2pix", None), ("AtoB", False))
    self.assertEqual(direction("pix2pix", "AtoB"), ("AtoB", False))
    self.assertEqual(direction("cyclegan", "BtoA"), ("BtoA", True))
    self.assertEqual(direction("unit", "AtoB", trained="BtoA"), ("AtoB", True))
    with self.assertRaisesRegex(ValueError, "^this pix2pix model translates AtoB only; "
                                            "--direction=BtoA needs a model trained with that "
                                            "direction$"):
      direction("pix2pix", "BtoA")
    with self.assertRaisesRegex(ValueError, "^--direction must be AtoB or BtoA, got 'up'$"):
      direction("cyclegan", "up")


class Recolor(algorithms.Algorithm):
  """A translation family unknown to evaluation/ and inference/: a 1x1
  convolution, its negation for the reverse direction."""
  inference = algorithms.TRANSLATION
  reversible = True
  stride = 4

  def __init__(self, config, data):
    super().__init__(config, data)
    keras.utils.set_random_seed(0)
    self.net = keras.Sequential([keras.layers.Input((None, None, data.shape[-1])),
                                 keras.layers.Conv2D(data.shape[-1], 1)])
    self.calls = 0

  def translate(self, x, reverse=False):
    self.calls += 1
    y = tf.tanh(self.net(tf.convert_to_tensor(x, tf.float32)))
    return -y if reverse else y

  def translation_networks(self):
    return [self.net]


class NewFamilyTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.data_dir = test_translation.small_data("shapes_paired")  # 32 px pairs.
    cls.manifest = manifest_lib.load(cls.data_dir)

  def setUp(self):
    super().setUp()
    self.tmp = self.create_tempdir().full_path
    self.config = config_lib.TrainConfig(
        algo="recolor", direction="AtoB", model_dir=self.tmp, eval_every=1,
        eval_num_samples=10, data_cache=os.path.join(self.tmp, "cache"))
    data = algorithms.DataInfo("paired", (32, 32, 3), 0, "shapes_paired")
    self.algorithm = Recolor(self.config, data)

  def _loaded(self):
    """sampling.load_algorithm answering with the new family's model."""
    return mock.patch.object(sampling, "load_algorithm", return_value=(self.algorithm, 7))

  def test_exported_as_translation(self):
    out = os.path.join(self.tmp, "model")
    info = export.export(self.algorithm, out, direction="BtoA", step=7)
    self.assertEqual((info["kind"], info["input_domain"], info["output_domain"], info["stride"]),
                     ("translation", "B", "A", 4))
    x = np.random.default_rng(0).uniform(-1, 1, (1, 21, 30, 3)).astype(np.float32)
    got = tf.saved_model.load(out).signatures["serving_default"](images=tf.constant(x))
    self.assertAllClose(got["images"], self.algorithm.translate(x, reverse=True), atol=1e-5)

  def test_applied_by_pipeline_translate_and_refused_by_sample_and_evaluate(self):
    src, dst = os.path.join(self.tmp, "in"), os.path.join(self.tmp, "out")
    os.makedirs(src)
    pixels = np.random.default_rng(1).integers(0, 256, (12, 20, 3), np.uint8)
    Image.fromarray(pixels).save(os.path.join(src, "a.png"))
    with self._loaded():
      result = translate.run(translate.TranslateConfig("run", src, dst))
      with self.assertRaisesRegex(ValueError, "^'run' holds a recolor run, a translation model: "
                                              "it draws no samples"):
        sampling.run(sampling.SampleConfig("run", os.path.join(self.tmp, "s.npz")))
      with self.assertRaisesRegex(ValueError, "^'run' holds a recolor run: translate held-out "
                                              "images first"):
        evaluate._fake_source(  # pylint: disable=protected-access
            evaluate.EvaluateConfig(real=self.data_dir, model_dir="run"), None)
    self.assertEqual(result.written, [os.path.join(dst, "a.png")])
    x = pixels[None].astype(np.float32) / 255.0 * 2.0 - 1.0
    expected = np.round((self.algorithm.translate(x)[0].numpy() + 1.0) / 2.0 * 255.0)
    self.assertAllClose(np.asarray(Image.open(result.written[0]), np.float32), expected, atol=1.0)

  def test_a_sampling_run_is_refused_by_pipeline_translate(self):
    gan = algorithms.get("dcgan")(config_lib.TrainConfig(algo="dcgan"), self.algorithm.data)
    with mock.patch.object(sampling, "load_algorithm", return_value=(gan, 1)):
      with self.assertRaisesRegex(ValueError, r"^'run' holds a dcgan run, not a translation "
                                              r"model \(cyclegan, pix2pix, unit\)$"):
        translate.run(translate.TranslateConfig("run", self.create_tempdir().full_path,
                                                self.create_tempdir().full_path))

  def test_evaluated_during_training_on_translated_test_images(self):
    net = keras.Sequential([keras.layers.Input((32, 32, 3)), keras.layers.Conv2D(4, 3),
                            keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4)])
    features = os.path.join(self.tmp, "features.keras")
    net.save(features)
    config = dataclasses.replace(self.config, eval_features=features)
    evaluation = during_training.DuringTraining(config, self.algorithm, self.data_dir,
                                                self.manifest, self.tmp, 0)
    self.assertEqual((evaluation.reference.real.split, evaluation.reference.real.feature),
                     ("test", "image_b"))
    out = evaluation.metrics(self.algorithm, 0)
    self.assertEqual(out["protocol"]["fake"]["translated"], "test (image_a), AtoB")
    self.assertGreater(self.algorithm.calls, 0)
    self.assertGreater(out["metrics"]["fid"], 0.0)


if __name__ == "__main__":
  tf.test.main()
