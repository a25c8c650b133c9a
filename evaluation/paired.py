"""Paired fidelity of translation, volume by volume: the library behind
`pipeline.evaluate --model_dir=RUN --real=DATA` for a translation run on
paired volumes, and `pipeline.evaluate --pairs=PRED,REF`.

    python -m pipeline.evaluate --model_dir=runs/pix2pix-t1t2 --real=/data/t1t2-tfr \
        --output=runs/pix2pix-t1t2/eval.json
    python -m pipeline.evaluate --pairs=translated/,/data/t2/ --output=other_tool/eval.json

The volumes (`evaluation.paired_data`): with `--model_dir`, DATA's held-out
pairs as converted, translated by the run, and the baselines fitted on
DATA's training pairs (`evaluation.baselines`); with `--pairs`, two folders
of NIfTI volumes matched by name.

Volumes (`pipeline.convert --volumes`): each held-out volume whole, as
`evaluation.volume_pairs` reads and translates it (the training patch by
blended sliding windows); its D slices are the slices of SSIM 2-D and of
the picture.

Figures (`evaluation.fidelity`) per volume and over volumes (mean, sd,
median), in modality units, inside the mask; PSNR and SSIM take the
window's width as their range. The report says whether the model beats each
baseline on MAE and SSIM (2-D), by their means over volumes.

With `--output=DIR/eval.json`: the results in it (under "paired"), a row per
volume and method in `DIR/eval_volumes.csv`, and a picture per volume in
`DIR/paired/` (`evaluation.paired_picture`).
"""

import csv
import os
import time

import tensorflow as tf

import algorithms
from evaluation import fidelity
from evaluation import paired_data
from evaluation import paired_picture
from evaluation import volume_pairs
from inference import sampling
from input import manifest as manifest_lib
from training import run_dir

MODEL = "model"
CSV_SUFFIX = "_volumes.csv"
PICTURES = "paired"


def validate(config):
  """Raises ValueError for the paired-fidelity settings of an
  `evaluate.EvaluateConfig` that nothing would read."""
  if config.pairs and (config.real or config.memorization):
    raise ValueError("--pairs scores two folders of volumes: it takes no --real and no "
                     "--memorization")
  if not config.pairs and (config.window or config.slice_axis):
    raise ValueError("--window and --slice_axis are read with --pairs only (a run's data has "
                     "its own)")


def score(volumes, predictions):
  """Figures of `predictions` (a list aligned with `volumes`) per volume."""
  return [fidelity.volume_figures(p, v.reference, v.window.high - v.window.low, v.mask)
          for v, p in zip(volumes, predictions)]


def beats(summary, method):
  """Whether the model beats `method` on MAE and SSIM (2-D): {figure: bool or None}."""
  out = {}
  for name in ("mae", "ssim_2d"):
    a, b = summary[MODEL].get(name, {}), summary[method].get(name, {})
    if "mean" not in a or "mean" not in b:
      out[name] = None
    else:
      out[name] = a["mean"] < b["mean"] if name == "mae" else a["mean"] > b["mean"]
  return out


def check_trained_against(run_holdout, manifest, model_dir, real):
  """Refuses held-out pairs that may have been training pairs of the run.

  Args:
    run_holdout: the run's `DataInfo.holdout` (the held-out split of the data
      it trained on), or None.

  Raises:
    ValueError: one line; --trust_split skips this check.
  """
  mine, theirs = (run_holdout or {}).get("fingerprint"), (manifest.get("holdout") or {}).get(
      "fingerprint")
  if mine is None or mine != theirs:
    what = ("was trained on data without a held-out split" if mine is None else
            "was trained on data split another way (another split fingerprint)")
    raise ValueError(f"{model_dir!r} {what}, so the held-out pairs of {real!r} may have been "
                     "training pairs; convert both with one --split_file, or pass "
                     "--trust_split if you know better")


# --- The report ---


def results(volumes, predictions, protocol, baseline_info=None):
  """The "paired" results: per volume, over volumes, whether the model beats
  each baseline.

  Args:
    volumes: the `Volume`s.
    predictions: {method: [prediction per volume]}, MODEL first.
    protocol: what was evaluated and how.
    baseline_info: {baseline: how it was made, or {"skipped": reason}}.
  """
  figures = {m: score(volumes, p) for m, p in predictions.items()}
  summary = {m: fidelity.summarize(f) for m, f in figures.items()}
  per_volume = [{"name": v.name, "voxels": figures[MODEL][i]["voxels"],
                 "window": v.window.to_json(),
                 **{m: {k: f[i][k] for k in fidelity.FIGURES} for m, f in figures.items()}}
                for i, v in enumerate(volumes)]
  return {"units": volumes[0].window.units, "protocol": protocol, "volumes": per_volume,
          "summary": summary, "baselines": baseline_info or {},
          "beats": {m: beats(summary, m) for m in predictions if m != MODEL}}


def write_outputs(output, paired, volumes, predictions, title):
  """eval.json at `output`, the per-volume CSV and the pictures beside it.

  Returns:
    (CSV path, picture paths).
  """
  out_dir = os.path.dirname(os.path.abspath(output))
  csv_path = os.path.join(out_dir, os.path.splitext(os.path.basename(output))[0] + CSV_SUFFIX)
  os.makedirs(out_dir, exist_ok=True)
  with open(csv_path, "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)
    w.writerow(["volume", "method", "voxels", *fidelity.FIGURES])
    for row in paired["volumes"]:
      for method in predictions:
        w.writerow([row["name"], method, row["voxels"],
                    *("" if row[method][k] is None else f"{row[method][k]:.6g}"
                      for k in fidelity.FIGURES)])
  pictures = []
  for v, p in zip(volumes, predictions[MODEL]):
    path = os.path.join(out_dir, PICTURES, v.name.replace("/", "_") + ".png")
    paired_picture.write(path, p, v.reference, v.window, v.mask, v.source, v.source_window,
                         v.window.units, f"{v.name}: {title}")
    pictures.append(path)
  return csv_path, pictures


def report_lines(paired):
  """The console report: a table of mean +- sd per method, then the verdicts."""
  units = paired["units"] or "window units"
  lines = [f"Paired fidelity over {len(paired['volumes'])} volume(s), inside the "
           f"{paired['protocol']['mask']} mask; MAE and RMSE in {units}, PSNR in dB",
           f"{'':20s}" + "".join(f"{k:>22s}" for k in fidelity.FIGURES)]
  for method, summary in paired["summary"].items():
    cells = [(f"{s['mean']:.4g} +- {s['sd']:.2g}" if s["n"] else "-")
             for s in (summary[k] for k in fidelity.FIGURES)]
    lines.append(f"{method:20s}" + "".join(f"{c:>22s}" for c in cells))
  for method, info in paired["baselines"].items():
    if "skipped" in info:
      lines.append(f"{method}: not scored: {info['skipped']}")
  for method, verdict in paired["beats"].items():
    said = [f"{'beats' if won else 'loses to'} it on {k.split('_')[0].upper()}"
            for k, won in verdict.items() if won is not None]
    lines.append(f"The model against {method}: {'; '.join(said) or 'not compared'}")
  return lines


# --- pipeline.evaluate ---


def translates_volumes(model_dir, manifest):
  """Whether `model_dir` holds a translation run and `manifest` paired
  volumes: `pipeline.evaluate --model_dir --real` then measures paired
  fidelity."""
  run_config, _ = run_dir.load_run(model_dir)
  return (algorithms.get(run_config.algo).inference == algorithms.TRANSLATION
          and manifest.get("kind") == "paired" and "pairs" in manifest)


def _model_predictions(config, data_dir, manifest):
  """(volumes, {method: predictions}, protocol, baseline info, title) of --model_dir."""
  algorithm, step = sampling.load_algorithm(config.model_dir, config.checkpoint)
  shape = tuple(manifest["features"]["image_a"]["shape"])
  spatial = len(shape) - 1  # Slices [H, W, C] or volumes [D, H, W, C].
  if tuple(algorithm.data.shape[:spatial]) != shape[:spatial]:
    raise ValueError(f"{config.model_dir!r} translates {tuple(algorithm.data.shape)} "
                     f"{'volumes' if spatial == 3 else 'slices'} but {config.real!r} holds "
                     f"{shape}")
  direction, reverse = algorithm.translation_direction(None)
  held_out = paired_data.HeldOutPairs(data_dir, manifest, direction, config.mask, config.batch_size)
  if not config.trust_split:
    check_trained_against(algorithm.data.holdout, manifest, config.model_dir, config.real)
  fn = tf.function(lambda x: algorithm.translate(x, reverse=reverse), reduce_retracing=True)
  predictions = {MODEL: held_out.predict(fn)}
  held_out.fit_baselines()
  predictions.update(held_out.baselines)
  protocol = {"mode": "model", "model_dir": os.path.abspath(config.model_dir), "step": step,
              "algo": algorithm.config.algo, "direction": direction, "real": config.real,
              "data_dir": os.path.abspath(data_dir), "split": "test", "mask": config.mask,
              "slices": (volume_pairs.describe(manifest) if spatial == 3 else
                         f"as converted: {shape[0]}x{shape[1]}, the data's window"),
              "units": "each reference volume's recorded window (modality = low + (x + 1) / 2 "
                       "* (high - low))"}
  return (held_out.volumes, predictions, protocol, held_out.baseline_info,
          f"{algorithm.config.algo} step {step}, {direction}")


def run(config, data_dir=None, manifest=None):
  """Paired fidelity for `pipeline.evaluate`.

  Args:
    config: an `evaluate.EvaluateConfig` with `pairs`, or with `model_dir`
      of a translation run and `real` of paired volumes.
    data_dir, manifest: `real`'s converted data (with `model_dir`).

  Returns:
    {"paired": `results`, "files": {...}, "seconds": float}; written, with
    the CSV and pictures, when `config.output` is set.

  Raises:
    ValueError: one line (bad folders, refused geometry, no held-out pairs,
      a model that may have trained on them).
  """
  start = time.time()
  if config.memorization:
    raise ValueError("--memorization audits sampling runs; a translation run is scored by "
                     "paired fidelity")
  if config.pairs:
    volumes, how = paired_data.read_pairs(config)
    predictions = {MODEL: [v.prediction for v in volumes]}
    protocol, info, title = {"mode": "pairs", "mask": config.mask, **how}, None, "--pairs"
  else:
    volumes, predictions, protocol, info, title = _model_predictions(config, data_dir,
                                                                     manifest)
  out = {"paired": results(volumes, predictions, protocol, info), "files": {},
         "seconds": round(time.time() - start, 1)}
  if config.output:
    csv_path, pictures = write_outputs(config.output, out["paired"], volumes, predictions,
                                       title)
    out["files"] = {"json": config.output, "csv": csv_path, "pictures": pictures}
    manifest_lib.write_json_atomic(config.output, out)
  return out
