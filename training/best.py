"""`--keep_best=METRIC`: the best checkpoint by an evaluation metric, kept
next to the latest ones.

The best checkpoint is a copy of a regular checkpoint (the trainer saves one
at every evaluation step when --keep_best is set), in
`MODEL_DIR/checkpoints/best/`, out of the CheckpointManager's rotation:

    checkpoints/best/ckpt-N.index, ckpt-N.data-*   the checkpoint of step N
    checkpoints/best/checkpoint                     its state file
                                                    (tf.train.latest_checkpoint works)
    checkpoints/best/best.json                      {"metric", "mode", "value",
                                                     "step", "checkpoint", "key"}

`pipeline.sample`, `evaluate`, `export` and `translate` read it with
`--checkpoint=best`.

Order of the writes, so that a crash at any point leaves a usable best
checkpoint: the new files are copied, then `best.json` and the state file
name them (each written atomically), then the older files are removed. A
crash before the record leaves stray files that the next copy overwrites or
removes.

Only the chief keeps it. On resume the record is read back and training goes
on comparing with it, unless it was made with another metric or evaluation
protocol (`key`), in which case the next evaluation replaces it.
"""

import json
import math
import os
import re

from absl import logging
import tensorflow as tf

from input import manifest as manifest_lib
from training import config as config_lib

BEST_SUBDIR = "best"
RECORD_NAME = "best.json"


def best_dir(checkpoint_dir):
  return os.path.join(checkpoint_dir, BEST_SUBDIR)


def load_record(checkpoint_dir):
  """The record of the best checkpoint in `checkpoint_dir`, or None."""
  path = os.path.join(best_dir(checkpoint_dir), RECORD_NAME)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def best_checkpoint(checkpoint_dir):
  """The path of the best checkpoint, or None."""
  record = load_record(checkpoint_dir)
  return os.path.join(best_dir(checkpoint_dir), record["checkpoint"]) if record else None


def is_better(mode, value, than):
  return value < than if mode == "min" else value > than


class BestKeeper:
  """Compares each evaluation with the best so far and copies the checkpoint
  of a better one (the chief's only)."""

  def __init__(self, checkpoint_dir, metric, key):
    self.dir = best_dir(checkpoint_dir)
    self.metric = metric
    self.mode = config_lib.BEST_METRICS[metric]
    self.key = key
    self.record = load_record(checkpoint_dir)
    if self.record is not None:
      if self.record.get("metric") != metric or self.record.get("key") != key:
        logging.warning(
            "%s holds the best checkpoint by %s under another evaluation protocol; the next "
            "evaluation by %s replaces it", self.dir, self.record.get("metric"), metric)
        self.record = None
      else:
        logging.info("Best checkpoint so far: step %d, %s %.6g", self.record["step"], metric,
                     self.record["value"])

  def consider(self, step, metrics, checkpoint):
    """Keeps `checkpoint` (a path prefix) if `metrics[metric]` is the best so far.

    Returns:
      True when it was kept.
    """
    value = metrics.get(self.metric)
    if value is None or not math.isfinite(value):
      logging.warning("--keep_best: %s is %s at step %d; not compared", self.metric, value,
                      step)
      return False
    if self.record is not None and not is_better(self.mode, value, self.record["value"]):
      return False
    tf.io.gfile.makedirs(self.dir)
    name = os.path.basename(checkpoint)
    for path in tf.io.gfile.glob(checkpoint + ".*"):
      tf.io.gfile.copy(path, os.path.join(self.dir, os.path.basename(path)), overwrite=True)
    record = {"metric": self.metric, "mode": self.mode, "value": float(value), "step": step,
              "checkpoint": name, "key": self.key}
    manifest_lib.write_json_atomic(os.path.join(self.dir, RECORD_NAME), record)
    tf.compat.v1.train.update_checkpoint_state(self.dir, name, all_model_checkpoint_paths=[name])
    for path in tf.io.gfile.listdir(self.dir):
      match = re.match(r"(ckpt-\d+)\.", path)
      if match and match.group(1) != name:
        tf.io.gfile.remove(os.path.join(self.dir, path))
    previous = self.record
    self.record = record
    logging.info("Best %s so far (%.6g at step %d%s): kept %s", self.metric, value, step,
                 f"; was {previous['value']:.6g} at step {previous['step']}" if previous else "",
                 os.path.join(self.dir, name))
    return True
