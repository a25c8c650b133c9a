"""The run directory (`--model_dir`): its layout, the checks before a run
writes into it, and what other programs read back from it.

    config.json          the resolved TrainConfig (training/config.py)
    data_info.json       the DataInfo the models were built for (with the data's
                         window and medical settings for DICOM/NIfTI data)
    checkpoints/         ckpt-N (the format of `trackable_items`), and each
                         worker's input positions in
                         input-worker<i>-of-<n>-batch<b>x<r>/ (training/checkpointing.py)
    checkpoints/best/    --keep_best's copy of one checkpoint and best.json
    samples/             step_NNNNNNN.png grids
    tensorboard/         event files
    eval.jsonl           --eval_every: one line {"step", "metrics", "seconds"} each
    eval_protocol.json   the protocol of the latest evaluation
    train.log            every log line of the chief, -v 1's debug lines included

`pipeline.sample`, `evaluate`, `export` and `translate` read runs through
`load_run`, `resolve_checkpoint` and `trackable_items`, never through
the trainer; benches and tests read its TensorBoard curves through
`read_summaries` and `read_scalars`.
"""

import dataclasses
import glob
import json
import logging as pylogging
import os
import shutil

from absl import logging
import keras
import tensorflow as tf

from algorithms import base
from input import manifest as manifest_lib
from training import config as config_lib
from training.errors import TrainingError

CHECKPOINT_SUBDIR = "checkpoints"
SAMPLES_SUBDIR = "samples"
TENSORBOARD_SUBDIR = "tensorboard"
DATA_INFO_NAME = "data_info.json"  # What sampling needs to rebuild the models.
EVAL_LOG_NAME = "eval.jsonl"
EVAL_PROTOCOL_NAME = "eval_protocol.json"
LOG_NAME = "train.log"  # Every log line of the chief's runs, -v 1's included.
BEST_SUBDIR = "best"  # Inside CHECKPOINT_SUBDIR.
BEST_RECORD_NAME = "best.json"


def prepare(config, is_chief):
  """Refuses an incompatible stored run, applies --fresh, writes config.json.

  Raises:
    TrainingError: `config.model_dir` holds a run with a conflicting config.
  """
  model_dir = config.model_dir
  stored = config_lib.load(model_dir)
  if config.fresh and os.path.isdir(model_dir):
    if is_chief:
      logging.warning("--fresh: removing the previous run in %s", model_dir)
      for name in (CHECKPOINT_SUBDIR, SAMPLES_SUBDIR, TENSORBOARD_SUBDIR):
        shutil.rmtree(os.path.join(model_dir, name), ignore_errors=True)
      for name in (config_lib.CONFIG_NAME, EVAL_LOG_NAME, EVAL_PROTOCOL_NAME, LOG_NAME):
        if os.path.exists(os.path.join(model_dir, name)):
          os.remove(os.path.join(model_dir, name))
    stored = None
  if stored is not None:
    diffs = config_lib.conflicts(stored, config)
    if diffs:
      text = "; ".join(f"{name}={old!r} there, {new!r} now" for name, old, new in diffs)
      raise TrainingError(
          f"--model_dir {model_dir!r} holds a run with a different config ({text}). "
          "Re-run with the same flags to resume, pass --fresh to start over, or choose "
          "another --model_dir")
  if is_chief:
    os.makedirs(model_dir, exist_ok=True)
    manifest_lib.write_json_atomic(os.path.join(model_dir, config_lib.CONFIG_NAME),
                                   json.loads(config.to_json()))


class LogFile:
  """While active (a context manager), every absl log line of this process,
  -v 1's debug lines included, is also appended to MODEL_DIR/train.log; the
  console keeps its own level."""

  def __init__(self, model_dir):
    self.path = os.path.join(model_dir, LOG_NAME)
    self._handler = None

  def __enter__(self):
    logger = logging.get_absl_logger()
    self._levels = (logger.level, logging.get_absl_handler().level)
    logging.get_absl_handler().setLevel(logger.getEffectiveLevel())
    logger.setLevel(logging.DEBUG)
    self._handler = pylogging.FileHandler(self.path, encoding="utf-8")
    self._handler.setFormatter(logging.PythonFormatter())
    logger.addHandler(self._handler)
    return self

  def __exit__(self, *exc_info):
    logger = logging.get_absl_logger()
    logger.removeHandler(self._handler)
    self._handler.close()
    logger.setLevel(self._levels[0])
    logging.get_absl_handler().setLevel(self._levels[1])


def write_data_info(model_dir, data):
  manifest_lib.write_json_atomic(os.path.join(model_dir, DATA_INFO_NAME),
                                 dataclasses.asdict(data))


def load_run(model_dir):
  """(TrainConfig, DataInfo) of a run directory.

  Raises:
    ValueError: not a run directory of pipeline.train.
  """
  config = config_lib.load(model_dir)
  info_path = os.path.join(model_dir, DATA_INFO_NAME)
  if config is None or not os.path.isfile(info_path):
    raise ValueError(f"{model_dir!r} is not a run directory of pipeline.train "
                     f"(no {config_lib.CONFIG_NAME} and {DATA_INFO_NAME})")
  with open(info_path, encoding="utf-8") as f:
    info = json.load(f)
  # window, medical, pixel_spacing, holdout, resize, shapes and voxel_spacing:
  # absent from run directories written before they existed.
  shapes = info.get("shapes")
  return config, base.DataInfo(kind=info["kind"], shape=tuple(info["shape"]),
                               num_classes=info["num_classes"], name=info["name"],
                               window=info.get("window"), medical=info.get("medical"),
                               pixel_spacing=info.get("pixel_spacing"),
                               holdout=info.get("holdout"), resize=info.get("resize"),
                               shapes=None if shapes is None else
                               {k: tuple(v) for k, v in shapes.items()},
                               voxel_spacing=info.get("voxel_spacing"))


def trackable_items(items):
  """Checkpoint items with every Keras model replaced by {variable path: variable}.

  Keras 3 models do not expose layers held in Python lists to
  tf.train.Checkpoint: their trainable weights are saved only through the
  optimizer, and their non-trainable ones (batch-norm statistics, spectral-norm
  vectors, the whole EMA generator) not at all. Saving every model's weights
  by path makes the checkpoint complete and independent of Keras tracking.
  """
  out = {}
  for name, obj in items.items():
    if isinstance(obj, keras.Model):
      weights = {v.path.replace("/", "."): v for v in obj.weights}
      if len(weights) != len(obj.weights):
        raise ValueError(f"model {name!r} has weights with duplicate paths; name its layers")
      out[name] = weights
    else:
      out[name] = obj
  return out


# --- The best checkpoint (--keep_best; written by evaluation/during_training.py) ---


def best_dir(checkpoint_dir):
  return os.path.join(checkpoint_dir, BEST_SUBDIR)


def load_best_record(checkpoint_dir):
  """The record of the best checkpoint in `checkpoint_dir`, or None."""
  path = os.path.join(best_dir(checkpoint_dir), BEST_RECORD_NAME)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def best_checkpoint(checkpoint_dir):
  """The path of the best checkpoint, or None."""
  record = load_best_record(checkpoint_dir)
  return os.path.join(best_dir(checkpoint_dir), record["checkpoint"]) if record else None


def resolve_checkpoint(model_dir, checkpoint=None):
  """The checkpoint path that `--checkpoint` names in a run directory.

  Args:
    model_dir: a run directory.
    checkpoint: a checkpoint path, a step number, or "best" (the best
      checkpoint kept by --keep_best); None: the latest.

  Raises:
    ValueError: no such checkpoint.
  """
  ckpt_dir = os.path.join(model_dir, CHECKPOINT_SUBDIR)
  if checkpoint is None:
    path = tf.train.latest_checkpoint(ckpt_dir)
  elif checkpoint == "best":
    path = best_checkpoint(ckpt_dir)
    if path is None:
      raise ValueError(f"no best checkpoint in {ckpt_dir!r}: it is kept by runs trained with "
                       "--keep_best=METRIC --eval_every=N")
  elif str(checkpoint).isdigit():
    path = os.path.join(ckpt_dir, f"ckpt-{int(checkpoint)}")
  else:
    path = checkpoint
  if not path or not tf.io.gfile.exists(path + ".index"):
    raise ValueError(f"no checkpoint {checkpoint or ''} in {ckpt_dir!r}")
  return path


def read_summaries(model_dir):
  """{tag: [(step, value)]} of every summary in the run's TensorBoard events
  (all event files: a resumed run adds one), sorted by step; each value is the
  summary's tensor as a numpy array (a scalar's is 0-d)."""
  out = {}
  for path in sorted(glob.glob(os.path.join(model_dir, TENSORBOARD_SUBDIR, "events.*"))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        out.setdefault(value.tag, []).append((event.step, tf.make_ndarray(value.tensor)))
  return {tag: sorted(points, key=lambda p: p[0]) for tag, points in out.items()}


def read_scalars(model_dir, tag):
  """[(step, value)] of one scalar curve of the run, sorted by step ([] if the
  run never wrote `tag`)."""
  return [(step, float(v)) for step, v in read_summaries(model_dir).get(tag, [])]
