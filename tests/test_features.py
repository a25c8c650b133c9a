"""Feature networks: InceptionV3 (randomly initialised at 75 px: no download
here), Keras model files and SavedModels, the pinned resize, the errors."""

import os
from unittest import mock

import keras
import numpy as np
import tensorflow as tf

from evaluation import features


def small_classifier(path=None, input_shape=(16, 16, 3), classes=3, softmax=False, seed=0):
  """An untrained CNN with a named embedding layer, saved to `path` if given."""
  keras.utils.set_random_seed(seed)
  model = keras.Sequential([
      keras.layers.Input(input_shape),
      keras.layers.Conv2D(8, 3, activation="relu", padding="same", name="conv"),
      keras.layers.GlobalAveragePooling2D(name="pool"),
      keras.layers.Dense(16, activation="relu", name="embedding"),
      keras.layers.Dense(classes, activation="softmax" if softmax else None, name="logits"),
  ])
  if path:
    model.save(path)
  return model


class PreprocessTest(tf.test.TestCase):

  def test_resize_is_pinned_bilinear_antialiased(self):
    x = np.random.default_rng(0).uniform(-1, 1, (2, 40, 40, 3)).astype(np.float32)
    got = features.preprocess(x, (16, 16), 3)
    self.assertAllClose(got, tf.image.resize(x, (16, 16), method="bilinear", antialias=True))
    self.assertNotAllClose(got, tf.image.resize(x, (16, 16), method="bilinear"))
    self.assertIn("antialias=True", features.RESIZE_METHOD)

  def test_channels_and_range(self):
    gray = np.full((1, 4, 4, 1), 0.5, np.float32)
    self.assertAllClose(features.preprocess(gray, None, 3), np.full((1, 4, 4, 3), 0.5))
    rgb = np.concatenate([np.full((1, 4, 4, 1), v, np.float32) for v in (1.0, 0.0, -1.0)], -1)
    self.assertAllClose(features.preprocess(rgb, None, 1), np.full((1, 4, 4, 1), 0.299 - 0.114))
    self.assertAllClose(features.preprocess(gray * 4, None, None), np.ones((1, 4, 4, 1)))


class InceptionTest(tf.test.TestCase):

  def test_random_init_and_weights_file_code_paths(self):
    # The real weights cannot be fetched here; the same code loads a weights
    # file written from a seeded random InceptionV3 of the same architecture.
    keras.utils.set_random_seed(5)
    reference = keras.applications.InceptionV3(include_top=True, weights=None,
                                               classifier_activation=None,
                                               input_shape=(75, 75, 3))
    path = os.path.join(self.create_tempdir().full_path, "inception.weights.h5")
    reference.save_weights(path)
    net = features.inception(path, input_size=75)
    self.assertEqual(net.protocol.weights_sha256, features.sha256_of_path(path))
    self.assertEqual(net.protocol.input_size, (75, 75))
    self.assertEqual(net.protocol.layer, "avg_pool (pool3, 2048-d)")
    self.assertTrue(net.has_logits)
    x = np.random.default_rng(0).uniform(-1, 1, (3, 32, 32, 1)).astype(np.float32)
    feats, logits = net(x)
    self.assertEqual(feats.shape, (3, 2048))
    self.assertEqual(logits.shape, (3, 1000))
    pool = keras.Model(reference.inputs[0], reference.get_layer("avg_pool").output)
    resized = tf.image.resize(np.repeat(x, 3, -1), (75, 75), "bilinear", antialias=True)
    self.assertAllClose(feats, pool(resized), atol=1e-4)
    self.assertAllClose(logits, reference(resized), atol=1e-4)

  def test_missing_weights_file_says_how_to_get_it(self):
    with self.assertRaises(features.FeatureNetworkError) as e:
      features.get("inception", inception_weights="/nonexistent/w.h5")
    text = str(e.exception)
    self.assertIn("'/nonexistent/w.h5' does not exist", text)
    self.assertIn(f"curl -L -o /nonexistent/w.h5 {features.INCEPTION_WEIGHTS_URL}", text)
    self.assertIn("--inception_weights=", text)

  def test_offline_download_failure_says_how_to_get_it(self):
    failure = Exception("URL fetch failure on https://...: None -- [Errno -3] name resolution")
    with mock.patch.object(keras.utils, "get_file", side_effect=failure):
      with self.assertRaisesRegex(features.FeatureNetworkError,
                                  "cannot download the InceptionV3 weights .*URL fetch failure"
                                  "(.|\n)*curl -L -o"):
        features.inception()


class ModelPathTest(tf.test.TestCase):

  def test_keras_file_penultimate_named_layer_and_head(self):
    path = os.path.join(self.create_tempdir().full_path, "clf.keras")
    model = small_classifier(path)
    x = np.random.default_rng(1).uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32)
    net = features.get(path)
    self.assertEqual(net.protocol.layer, "embedding")
    self.assertEqual(net.protocol.logits, "logits (3)")
    self.assertEqual(net.protocol.weights_sha256, features.sha256_of_path(path))
    feats, logits = net(x)
    self.assertAllClose(feats, keras.Model(model.inputs[0], model.get_layer("embedding").output)(x),
                        atol=1e-6)
    self.assertAllClose(logits, model(x), atol=1e-6)
    # A 4-D layer is global-average pooled; images of another size are resized.
    conv = features.get(path, feature_layer="conv")
    self.assertEqual(conv.protocol.layer, "conv (global average pool)")
    self.assertEqual(conv(np.zeros((2, 32, 32, 3), np.float32))[0].shape, (2, 8))
    with self.assertRaisesRegex(features.FeatureNetworkError,
                                "--feature_layer 'nope' is not a layer .*layers: conv, pool, "
                                "embedding, logits"):
      features.get(path, feature_layer="nope")

  def test_softmax_head_gives_log_probabilities(self):
    path = os.path.join(self.create_tempdir().full_path, "clf.keras")
    model = small_classifier(path, softmax=True)
    x = np.random.default_rng(2).uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32)
    _, logits = features.get(path)(x)
    self.assertAllClose(np.exp(logits), model(x), atol=1e-6)

  def test_saved_model(self):
    model = small_classifier()
    module = tf.Module()
    module.weights = list(model.weights)
    embed = keras.Model(model.inputs[0], model.get_layer("embedding").output)
    module.serve = tf.function(lambda images: {"embedding": embed(images), "logits": model(images)},
                               input_signature=[tf.TensorSpec([None, 16, 16, 3], tf.float32)])
    path = os.path.join(self.create_tempdir().full_path, "sm")
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    with self.assertRaisesRegex(features.FeatureNetworkError,
                                "has outputs embedding, logits; choose one with --feature_layer"):
      features.get(path)
    net = features.get(path, feature_layer="embedding")
    x = np.random.default_rng(3).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    self.assertAllClose(net(x)[0], embed(x), atol=1e-6)
    self.assertIsNone(net(x)[1])
    self.assertEqual(net.protocol.input_size, (16, 16))

  def test_bad_paths(self):
    with self.assertRaisesRegex(features.FeatureNetworkError, "no such file; use inception"):
      features.get("/nonexistent/model.keras")
    with self.assertRaisesRegex(features.FeatureNetworkError, "without saved_model.pb"):
      features.get(self.create_tempdir().full_path)


if __name__ == "__main__":
  tf.test.main()
