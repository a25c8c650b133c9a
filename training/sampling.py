"""Loading a trained generator from a run directory and drawing samples."""

import json
import os

import numpy as np
import tensorflow as tf

from training import algorithms
from training import config as config_lib
from training import trainer


def load_algorithm(model_dir, checkpoint=None):
  """Rebuilds a run's algorithm and restores its generator(s) (also of
  translation algorithms).

  Args:
    model_dir: a run directory written by `pipeline.train`.
    checkpoint: a checkpoint path, or a step number; None: the latest.

  Returns:
    (algorithm, step).

  Raises:
    ValueError: not a run directory, or no such checkpoint.
  """
  config = config_lib.load(model_dir)
  info_path = os.path.join(model_dir, trainer.DATA_INFO_NAME)
  if config is None or not os.path.isfile(info_path):
    raise ValueError(f"{model_dir!r} is not a run directory of pipeline.train "
                     f"(no {config_lib.CONFIG_NAME} and {trainer.DATA_INFO_NAME})")
  with open(info_path, encoding="utf-8") as f:
    info = json.load(f)
  data = algorithms.DataInfo(kind=info["kind"], shape=tuple(info["shape"]),
                             num_classes=info["num_classes"], name=info["name"])
  ckpt_dir = os.path.join(model_dir, trainer.CHECKPOINT_SUBDIR)
  if checkpoint is None:
    path = tf.train.latest_checkpoint(ckpt_dir)
  elif str(checkpoint).isdigit():
    path = os.path.join(ckpt_dir, f"ckpt-{int(checkpoint)}")
  else:
    path = checkpoint
  if not path or not tf.io.gfile.exists(path + ".index"):
    raise ValueError(f"no checkpoint {checkpoint or ''} in {ckpt_dir!r}")
  algorithm = algorithms.get(config.algo)(config, data)
  algorithm.build()
  # The generators only (of every algorithm: generator, ema_generator,
  # generator_ab/_ba, unit); discriminators, optimizers and pools stay behind.
  items = {k: v for k, v in algorithm.checkpoint_items().items()
           if not k.startswith(("discriminator", "pools")) and "optimizer" not in k}
  step = tf.Variable(0, dtype=tf.int64)
  tf.train.Checkpoint(step=step, **trainer.trackable_items(items)).restore(
      path).expect_partial()
  return algorithm, int(step.numpy())


def sample(algorithm, num, labels=None, seed=0, batch_size=256):
  """Draws `num` samples; returns (samples [num, ...] in [-1, 1], labels or None).

  Args:
    labels: for conditional algorithms, a list of class indices cycled over
      the samples (None: all classes in turn).
  """
  num_classes = getattr(algorithm, "num_classes", 0)
  z = tf.random.stateless_normal([num, algorithm.config.z_dim], seed=[seed, 777], alg="philox")
  y = None
  if num_classes:
    classes = list(range(num_classes)) if labels is None else list(labels)
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
      raise ValueError(f"--labels {bad} outside 0..{num_classes - 1}")
    y = np.resize(np.asarray(classes, np.int32), num)
  elif labels:
    raise ValueError(f"--labels given but {algorithm.config.algo} is not conditional")
  out = []
  for start in range(0, num, batch_size):
    zb = z[start:start + batch_size]
    yb = None if y is None else tf.constant(y[start:start + batch_size])
    out.append(algorithm.sample(zb, yb).numpy())
  return np.concatenate(out), y
