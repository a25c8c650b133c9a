"""Evaluation during training (`--eval_every`, `--keep_best`), on the chief.

`DuringTraining` is what `pipeline.train` hands the trainer: the trainer
calls it every N steps with the step, the TensorBoard writer and the step's
checkpoint; it writes `eval/*` scalars, a line of `MODEL_DIR/eval.jsonl`,
`eval_protocol.json` and the console line, and keeps the best checkpoint.

The best checkpoint (--keep_best) is a copy of a regular checkpoint (the trainer saves one
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

import dataclasses
import json
import math
import os
import re
import time

from absl import logging
import tensorflow as tf

import algorithms
from evaluation import evaluate
from evaluation import fidelity
from evaluation import paired
from evaluation import paired_data
from inference import sampling
from input import manifest as manifest_lib
from training import config as config_lib
from training import run_dir

# Paired fidelity during training (translation runs on paired volumes with a
# held-out split): the name in eval.jsonl and TensorBoard (eval/NAME), and
# the figure (`fidelity.FIGURES`) whose mean over the held-out volumes it is.
PAIRED_METRICS = {"mae": "mae", "rmse": "rmse", "psnr": "psnr", "ssim": "ssim_2d",
                  "ssim_3d": "ssim_3d"}


def translation_real(data_dir, manifest, direction, num):
  """(target `evaluate.Real`, source split, source feature) of a translation run: the
  held-out split where the data has one (else train), translated in the
  trained direction."""
  forward = direction == "AtoB"
  splits = manifest["splits"]
  if manifest["kind"] == "paired":
    split = "test" if "test" in splits else "train"
    target, source = ("image_b", "image_a") if forward else ("image_a", "image_b")
    available = splits[split]["num_examples"]
    real = evaluate.Real(data_dir, manifest, split, target, min(num, available))
    return real, split, source
  stem = "test" if "testA" in splits and "testB" in splits else "train"
  target_split, source_split = (stem + "B", stem + "A") if forward else (stem + "A", stem + "B")
  available = splits[target_split]["num_examples"]
  real = evaluate.Real(data_dir, manifest, target_split, "image", min(num, available))
  return real, source_split, "image"


class DuringTraining:
  """The evaluation `--eval_every` runs on the chief: the real statistics and
  the feature network are computed once, at start; `evaluate(algorithm, step)`
  then compares the current generator with them.

  Sampling algorithms: `num` samples (the EMA generator where there is one)
  from the latents `pipeline.sample --seed=SEED` draws, against the first
  `num` held-out examples (split `test`, e.g. from `pipeline.convert
  --holdout`; `train` when the data has none): the figures `pipeline.evaluate
  --model_dir=RUN --checkpoint=STEP --real_split=test` reports with the same
  settings. Translation algorithms:
  the held-out source images (split test, else train) translated in the
  trained direction, against the same split's target images; on paired
  volumes with a held-out split, also their paired fidelity
  (`PAIRED_METRICS`, as `pipeline.evaluate --model_dir=RUN --real=DATA`
  reports it), with the baselines' logged once, at start. Runs trained on
  volumes: FID and the other image figures are those of the volumes'
  mid-plane images (`evaluation.volume_features`; held-out tiles for 3-D
  patch data), and paired fidelity that of the whole held-out volumes
  through the sliding window (`evaluation.volume_pairs`).
  """

  def __init__(self, config, algorithm, data_dir, manifest, checkpoint_dir, step):
    self.config = config
    self.algorithm = algorithm
    self.is_translation = algorithm.inference == algorithms.TRANSLATION
    num = config.eval_num_samples
    self.eval_config = evaluate.EvaluateConfig(
        real=data_dir, features=config.eval_features,
        inception_weights=config.inception_weights, feature_layer=config.eval_feature_layer,
        num_samples=num, num_real=num, seed=config.seed, data_cache=config.data_cache,
        kid_subset_size=min(1000, num),
        real_split="test" if "test" in manifest["splits"] else "train")
    if self.is_translation:
      real, self._source_split, self._source_feature = translation_real(
          data_dir, manifest, config.direction, num)
    else:
      real = evaluate.resolve_real(self.eval_config)
    logging.info("Evaluation every %d steps: %d samples against %d real examples of %s (%s)",
                 config.eval_every, num, real.count, real.split, real.feature)
    self.reference = evaluate.prepare(self.eval_config, real)
    self.held_out = None
    if self.is_translation and paired_data.has_held_out_pairs(manifest):
      self.held_out = self._prepare_paired(data_dir, manifest)
    available = self.reference.available_metrics() + (list(PAIRED_METRICS) if self.held_out
                                                      else [])
    if config.keep_best and config.keep_best not in available:
      raise ValueError(f"--keep_best={config.keep_best} is not computed here: the metrics "
                       f"of this data and feature network are {', '.join(available)}")
    self.best = None
    if config.keep_best:
      self.best = BestKeeper(checkpoint_dir, config.keep_best, self.key)
    self._trim_log(step)

  def _prepare_paired(self, data_dir, manifest):
    """The held-out pairs, and the baselines' figures on them (logged once)."""
    held_out = paired_data.HeldOutPairs(data_dir, manifest, self.config.direction)
    held_out.fit_baselines()
    self._baseline_figures = {}
    for method, predictions in held_out.baselines.items():
      summary = fidelity.summarize(paired.score(held_out.volumes, predictions))
      self._baseline_figures[method] = _means(summary)
      logging.info("Paired fidelity of the baseline %s on %d held-out volume(s): %s", method,
                   len(held_out.volumes), " ".join(
                       f"{k} {v:.4g}" for k, v in self._baseline_figures[method].items()))
    return held_out

  @property
  def key(self):
    """What must match for two evaluations' figures to be comparable."""
    real = self.reference.real
    return {"features": {k: v for k, v in self.reference.net.protocol.to_dict().items()
                         if k != "weights"},
            "num": self.eval_config.num_samples, "seed": self.eval_config.seed,
            "real": {"manifest_sha256": real.manifest_sha256, "split": real.split,
                     "feature": real.feature, "count": real.count}}

  def _fake_batches(self, algorithm):
    num, batch_size = self.eval_config.num_samples, self.eval_config.batch_size
    if not self.is_translation:
      return (x for x, _ in sampling.iter_samples(algorithm, num, seed=self.eval_config.seed,
                                                  batch_size=batch_size))
    source = dataclasses.replace(self.reference.real, split=self._source_split,
                                 feature=self._source_feature)
    source = dataclasses.replace(source, count=min(
        num, source.manifest["splits"][self._source_split]["num_examples"]))
    return (algorithm.translate(x).numpy() for x in evaluate.real_batches(source, batch_size))

  def metrics(self, algorithm, step):
    """The metrics of `algorithm` now: {"metrics", "protocol", "cache"}."""
    fake_info = {"training_step": step, "algo": self.config.algo}
    if self.is_translation:
      fake_info["translated"] = f"{self._source_split} ({self._source_feature}), " \
                                f"{self.config.direction}"
    else:
      fake_info["latents"] = (f"stateless normal, seed [{self.eval_config.seed}, 777] (as "
                              "pipeline.sample)")
    out = evaluate.compare(self.reference, fake_info, self._fake_batches(algorithm))
    if self.held_out is not None:
      predictions = self.held_out.predict(algorithm.translate)
      out["metrics"].update(_means(fidelity.summarize(paired.score(self.held_out.volumes,
                                                                   predictions))))
      out["protocol"]["paired"] = {
          "volumes": [v.name for v in self.held_out.volumes], "split": "test",
          "mask": self.held_out.mask_rule, "metrics": PAIRED_METRICS,
          "baselines": self._baseline_figures, "baseline_fits": self.held_out.baseline_info}
    return out

  def _trim_log(self, step):
    """Drops the lines of eval.jsonl past the checkpoint resumed from (`step`):
    they were evaluated by a run that crashed before saving again, and are
    evaluated again."""
    path = os.path.join(self.config.model_dir, run_dir.EVAL_LOG_NAME)
    if not os.path.isfile(path):
      return
    with open(path, encoding="utf-8") as f:
      lines = [line for line in f if line.strip()]
    kept = []
    for line in lines:
      try:
        if json.loads(line)["step"] <= step:
          kept.append(line)
      except (ValueError, KeyError):  # A line torn by a crash.
        pass
    if len(kept) != len(lines):
      manifest_lib.write_text_atomic(path, "".join(kept))

  def __call__(self, step, writer, checkpoint):
    """The evaluation at `step`: TensorBoard `eval/*`, a line of eval.jsonl,
    the console, and the best checkpoint (`checkpoint`, the step's, saved
    when --keep_best is set). Returns the metrics."""
    model_dir = self.config.model_dir
    start = time.time()
    out = self.metrics(self.algorithm, step)
    seconds = time.time() - start
    values = {k: float(v) for k, v in out["metrics"].items()}
    with writer.as_default():
      for k, v in values.items():
        tf.summary.scalar(f"eval/{k}", v, step=step)
    writer.flush()
    with open(os.path.join(model_dir, run_dir.EVAL_LOG_NAME), "a", encoding="utf-8") as f:
      f.write(json.dumps({"step": step, "metrics": values, "seconds": round(seconds, 1)}) + "\n")
      f.flush()
      os.fsync(f.fileno())
    manifest_lib.write_json_atomic(os.path.join(model_dir, run_dir.EVAL_PROTOCOL_NAME),
                                   out["protocol"])
    logging.info("eval step %d | %s | %.1f s", step,
                 " ".join(f"{k} {v:.4g}" for k, v in values.items()), seconds)
    if self.best is not None:
      self.best.consider(step, values, checkpoint)
    return values


def _means(summary):
  """{metric: the mean over volumes} of a `fidelity.summarize`, named as in
  eval.jsonl (`PAIRED_METRICS`); figures no volume has are left out."""
  return {name: summary[figure]["mean"] for name, figure in PAIRED_METRICS.items()
          if summary[figure]["n"]}


def is_better(mode, value, than):
  return value < than if mode == "min" else value > than


class BestKeeper:
  """Compares each evaluation with the best so far and copies the checkpoint
  of a better one (the chief's only)."""

  def __init__(self, checkpoint_dir, metric, key):
    self.dir = run_dir.best_dir(checkpoint_dir)
    self.metric = metric
    self.mode = config_lib.BEST_METRICS[metric]
    self.key = key
    self.record = run_dir.load_best_record(checkpoint_dir)
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
    manifest_lib.write_json_atomic(os.path.join(self.dir, run_dir.BEST_RECORD_NAME), record)
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
