"""Feature networks for the evaluation metrics, and the protocol they pin.

`get(features, ...)` returns a `FeatureNetwork`: a callable from images in
[-1, 1] (this project's range for data and generators) to
(features [B, d], logits [B, K] or None), and a `Protocol` recording exactly
what it computes.

- `inception`: Keras's InceptionV3 with its ImageNet top, at 299x299.
  Features: pool3, the 2048-d global average pool (`avg_pool`) before the
  classifier, as in FID (Heusel et al. 2017). Logits: the 1,000-class
  `predictions` layer with no softmax, for the Inception Score. The top is
  loaded because IS needs it; FID and KID read only pool3. The weights come
  from `--inception_weights=FILE`, or through Keras's normal download (cached
  in ~/.keras/models) when online; a missing file offline is a
  `FeatureNetworkError` that says how to get it.
  Note: these are Keras's ImageNet weights, not the 2015 TF graph that the
  TTUR / pytorch-fid reference code uses (1,008 classes), so figures are
  comparable with other runs of this protocol, not with papers' FIDs.
- a path: any Keras model file (`.keras`, `.h5`) or SavedModel directory.
  Keras models: features from `--feature_layer=NAME`, by default the
  penultimate layer (the input of the last one); 4-D outputs are global
  average pooled. When the model's output is [B, K >= 2] and is not the
  feature layer, it is the classifier head for IS (read as logits, or as
  probabilities when the last layer's activation is softmax). SavedModels:
  features are the output `--feature_layer` of the `serving_default`
  signature (default: its only output); no IS.
- `identity`: 2-D vector data is its own feature space.

Preprocessing, pinned and recorded: images are clipped to [-1, 1], brought to
the network's channels (gray repeated to RGB; RGB to gray with ITU-R 601-2
luma weights) and resized to its input size with
`tf.image.resize(method="bilinear", antialias=True)` (not when it already has
that size, or when the network takes any size). InceptionV3's Keras input
range is [-1, 1] (`inception_v3.preprocess_input`), the same as ours, so no
rescaling follows; other networks must take [-1, 1] too.
"""

import dataclasses
import hashlib
import json
import os

import keras
import tensorflow as tf

__all__ = [
    "FeatureNetwork", "FeatureNetworkError", "INCEPTION_WEIGHTS_NAME", "INCEPTION_WEIGHTS_URL",
    "Protocol", "RESIZE_METHOD", "from_path", "get", "identity", "inception", "preprocess",
    "sha256_of_path",
]

RESIZE_METHOD = "tf.image.resize(method='bilinear', antialias=True)"
INCEPTION_WEIGHTS_NAME = "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"
INCEPTION_WEIGHTS_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/"
                         "inception_v3/" + INCEPTION_WEIGHTS_NAME)
_INCEPTION_WEIGHTS_MD5 = "9a0d58056eeedaa3f26cb7ebd46da564"  # Keras's own check.
_LUMA = (0.299, 0.587, 0.114)


class FeatureNetworkError(ValueError):
  """A feature network that cannot be built: missing weights, bad layer name."""


@dataclasses.dataclass(frozen=True)
class Protocol:
  """What a feature network computes; recorded in every evaluation's JSON.

  Attributes:
    features: `inception`, a model path, or `identity`.
    layer: the layer (or SavedModel output) whose values are the features.
    weights: the weights file or model path read ('' for none).
    weights_sha256: sha256 of that file (of every file, for a directory);
      `random-init` for untrained test networks.
    input_size: (H, W) images are resized to; None: any size.
    channels: channels the network takes; None: as given.
    input_range: the value range the network receives.
    resize: the resize method.
    logits: the classifier layer used for IS ('' when there is none).
  """
  features: str
  layer: str
  weights: str
  weights_sha256: str
  input_size: tuple | None
  channels: int | None
  input_range: str = "[-1, 1]"
  resize: str = RESIZE_METHOD
  logits: str = ""

  def to_dict(self):
    d = dataclasses.asdict(self)
    d["input_size"] = list(self.input_size) if self.input_size else None
    return d

  @property
  def key(self):
    """A short hash of everything that determines the features (cache keys)."""
    text = json.dumps(self.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def sha256_of_path(path):
  """sha256 of a file, or of a directory's files (relative names and bytes, sorted)."""
  h = hashlib.sha256()
  if os.path.isdir(path):
    for root, dirs, files in os.walk(path):
      dirs.sort()
      for name in sorted(files):
        full = os.path.join(root, name)
        h.update(os.path.relpath(full, path).encode() + b"\0")
        _update_from_file(h, full)
  else:
    _update_from_file(h, path)
  return h.hexdigest()


def _update_from_file(h, path):
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)


def preprocess(images, size=None, channels=None):
  """Images in [-1, 1] -> the network's input (see the module docstring).

  Args:
    images: [B, H, W, C] float.
    size: (H', W') to resize to, or None.
    channels: 1 or 3 to convert to, or None.
  """
  x = tf.clip_by_value(tf.cast(images, tf.float32), -1.0, 1.0)
  c = x.shape[-1]
  if channels == 3 and c == 1:
    x = tf.repeat(x, 3, axis=-1)
  elif channels == 1 and c == 3:
    x = tf.reduce_sum(x * tf.constant(_LUMA), axis=-1, keepdims=True)
  if size is not None and tuple(x.shape[1:3]) != tuple(size):
    x = tf.image.resize(x, size, method="bilinear", antialias=True)
  return x


class FeatureNetwork:
  """images [B, H, W, C] in [-1, 1] -> (features [B, d] float32, logits [B, K] or None)."""

  def __init__(self, fn, protocol, images=True):
    """`fn` maps preprocessed images (or, with images=False, the inputs as
    they are) to (features, logits or None) tensors."""
    self.protocol = protocol
    size, channels = protocol.input_size, protocol.channels

    def call(x):
      return fn(preprocess(x, size, channels) if images else x)

    self._call = tf.function(call, reduce_retracing=True)

  @property
  def has_logits(self):
    return bool(self.protocol.logits)

  def __call__(self, images):
    features, logits = self._call(tf.convert_to_tensor(images, tf.float32))
    return features.numpy(), None if logits is None else logits.numpy()


def identity():
  """Vectors are their own features (2-D data)."""
  protocol = Protocol("identity", "", "", "", None, None, input_range="data", resize="none")
  return FeatureNetwork(lambda x: (x, None), protocol, images=False)


def _inception_weights_help(path=None):
  target = path or INCEPTION_WEIGHTS_NAME
  return (f"Get the Keras ImageNet weights of InceptionV3 (with the top, 92 MB; Keras checks "
          f"md5 {_INCEPTION_WEIGHTS_MD5}) on a machine with network access:\n"
          f"    curl -L -o {target} {INCEPTION_WEIGHTS_URL}\n"
          f"then pass --inception_weights={target} (or copy it to "
          f"~/.keras/models/{INCEPTION_WEIGHTS_NAME}, where Keras's download looks first).")


def _inception_weights_file(weights):
  """The local weights file: `weights` if given, else Keras's cached download."""
  if weights:
    if not os.path.isfile(weights):
      raise FeatureNetworkError(f"--inception_weights {weights!r} does not exist. "
                                + _inception_weights_help(weights))
    return weights
  try:
    return keras.utils.get_file(INCEPTION_WEIGHTS_NAME, INCEPTION_WEIGHTS_URL,
                                cache_subdir="models", file_hash=_INCEPTION_WEIGHTS_MD5)
  except Exception as e:  # pylint: disable=broad-except  (Keras raises plain Exception)
    raise FeatureNetworkError(
        f"cannot download the InceptionV3 weights (offline?): {str(e).splitlines()[0]}. "
        + _inception_weights_help()) from e


def inception(weights=None, input_size=299, random_init=False, seed=0):
  """InceptionV3 pool3 features and ImageNet logits.

  Args:
    weights: path of the Keras weights file (`INCEPTION_WEIGHTS_NAME`); None:
      Keras's cached download, downloading it when online.
    input_size: 299, the size the weights were trained at (tests use 75,
      the smallest InceptionV3 accepts).
    random_init: random weights (seeded), no file: for testing the code
      path offline. Their features mean nothing.

  Raises:
    FeatureNetworkError: no weights file and no way to download it.
  """
  path = None if random_init else _inception_weights_file(weights)
  if random_init:
    keras.utils.set_random_seed(seed)
  model = keras.applications.InceptionV3(
      include_top=True, weights=None, classifier_activation=None,
      input_shape=(input_size, input_size, 3))
  if path:
    model.load_weights(path)
  net = keras.Model(model.inputs[0], [model.get_layer("avg_pool").output, model.output])
  protocol = Protocol(
      features="inception", layer="avg_pool (pool3, 2048-d)",
      weights=os.path.abspath(path) if path else "",
      weights_sha256=sha256_of_path(path) if path else f"random-init seed {seed}",
      input_size=(input_size, input_size), channels=3, logits="predictions (1000, no softmax)")
  return FeatureNetwork(lambda x: tuple(net(x, training=False)), protocol)


def _is_softmax(layer):
  return getattr(getattr(layer, "activation", None), "__name__", "") == "softmax"


def _from_keras(path, layer):
  try:
    model = keras.models.load_model(path, compile=False)
  except Exception as e:  # pylint: disable=broad-except
    raise FeatureNetworkError(f"--features {path!r}: cannot load a Keras model: {e}") from e
  if len(model.inputs) != 1:
    raise FeatureNetworkError(f"--features {path!r} takes {len(model.inputs)} inputs; it "
                              "needs one")
  names = [l.name for l in model.layers]
  if layer is None:
    candidates = [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]
    if len(candidates) < 2:
      raise FeatureNetworkError(f"--features {path!r} has no penultimate layer; name one "
                                f"with --feature_layer (layers: {', '.join(names)})")
    chosen = candidates[-2]
  elif layer in names:
    chosen = model.get_layer(layer)
  else:
    raise FeatureNetworkError(f"--feature_layer {layer!r} is not a layer of {path!r}; "
                              f"layers: {', '.join(names)}")
  out = model.outputs[0] if isinstance(model.outputs, list) else model.outputs
  head = (len(out.shape) == 2 and out.shape[-1] >= 2 and chosen is not model.layers[-1])
  softmax = head and _is_softmax(model.layers[-1])
  net = keras.Model(model.inputs[0], [chosen.output, out] if head else [chosen.output])
  feature_rank = len(chosen.output.shape)

  def fn(x):
    outputs = net(x, training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    feats = outputs[0]
    if feature_rank == 4:
      feats = tf.reduce_mean(feats, axis=[1, 2])
    elif feature_rank != 2:
      feats = tf.reshape(feats, [tf.shape(feats)[0], -1])
    logits = None
    if head:
      logits = tf.math.log(outputs[1] + 1e-30) if softmax else outputs[1]
    return feats, logits

  shape = model.input_shape
  size = tuple(shape[1:3]) if None not in shape[1:3] else None
  desc = chosen.name + (" (global average pool)" if feature_rank == 4 else "")
  logits = ""
  if head:
    logits = f"{model.layers[-1].name} ({out.shape[-1]}{', softmax -> log' if softmax else ''})"
  protocol = Protocol(features=os.path.abspath(path), layer=desc, weights=os.path.abspath(path),
                      weights_sha256=sha256_of_path(path), input_size=size,
                      channels=shape[-1], logits=logits)
  return FeatureNetwork(fn, protocol)


def _from_saved_model(path, layer):
  loaded = tf.saved_model.load(path)
  if "serving_default" not in loaded.signatures:
    raise FeatureNetworkError(f"--features {path!r}: the SavedModel has no serving_default "
                              "signature")
  sig = loaded.signatures["serving_default"]
  inputs = sig.structured_input_signature[1]
  if len(inputs) != 1:
    raise FeatureNetworkError(f"--features {path!r}: serving_default takes {sorted(inputs)}; "
                              "it needs one image input")
  (input_name, spec), = inputs.items()
  outputs = sorted(sig.structured_outputs)
  if layer is None and len(outputs) != 1:
    raise FeatureNetworkError(f"--features {path!r} has outputs {', '.join(outputs)}; choose "
                              "one with --feature_layer")
  layer = layer or outputs[0]
  if layer not in outputs:
    raise FeatureNetworkError(f"--feature_layer {layer!r} is not an output of {path!r}; "
                              f"outputs: {', '.join(outputs)}")

  def fn(x):
    feats = sig(**{input_name: x})[layer]
    if len(feats.shape) == 4:
      feats = tf.reduce_mean(feats, axis=[1, 2])
    return tf.reshape(feats, [tf.shape(feats)[0], -1]), None

  shape = spec.shape
  size = tuple(shape[1:3]) if None not in shape[1:3] else None
  protocol = Protocol(features=os.path.abspath(path), layer=f"serving_default output {layer}",
                      weights=os.path.abspath(path), weights_sha256=sha256_of_path(path),
                      input_size=size, channels=shape[-1])
  net = FeatureNetwork(fn, protocol)
  net.loaded = loaded  # Keeps the variables alive.
  return net


def from_path(path, layer=None):
  """A Keras model file or SavedModel directory as a feature network.

  Raises:
    FeatureNetworkError: no such file, unreadable model, or unknown layer.
  """
  if os.path.isdir(path):
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
      raise FeatureNetworkError(f"--features {path!r} is a directory without saved_model.pb")
    return _from_saved_model(path, layer)
  if not os.path.isfile(path):
    raise FeatureNetworkError(f"--features {path!r}: no such file; use inception, a Keras "
                              "model file (.keras, .h5) or a SavedModel directory")
  return _from_keras(path, layer)


def get(features="inception", inception_weights=None, feature_layer=None):
  """The feature network named by `--features` (see the module docstring)."""
  if features == "inception":
    if feature_layer:
      raise FeatureNetworkError("--feature_layer applies to --features=PATH; inception uses "
                                "pool3")
    return inception(inception_weights)
  if features == "identity":
    return identity()
  return from_path(features, feature_layer)
