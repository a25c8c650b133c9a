r"""python -m bench.translation_precision --results_dir=bench/results
python -m bench.translation_precision --seeds=0,1 --results_dir=bench/results
python -m bench.translation_precision --train_steps=100 --size=64,64,48 --image_size=64

Whether mixed_bfloat16 harms pix2pix's translations: the same short paired
training in float32 and in mixed_bfloat16 (same seed, data, batch and steps),
each scored with the project's paired fidelity on the held-out subjects.

The data is the README's medical quick start at 128 px: `--subjects`
synthetic head phantoms (`pipeline.make_phantoms --size`, by default
128x128x96 voxels), T1w -> T2w, converted with `--window=percentile:0.5,99.5
--holdout=0.2 --split_by=patient` at `--image_size`. Each precision trains
`python -m`-style in its own process (`training.trainer.run`, pix2pix's
defaults: batch 4, jitter, width 64), then `python -m pipeline.evaluate
--model_dir=RUN --real=DATA` translates the held-out volumes and scores them
beside its baselines (identity, the intensity lookup table fitted on the
training pairs): MAE, RMSE (window units), PSNR, SSIM 2-D and 3-D inside the
auto mask, mean +- sd over volumes (`evaluation/paired.py`).

The trainings run one after the other; their steps/s (the last log
interval) is printed as an aside. The speed comparison, side by side, is
`bench/train_step.py --algos=pix2pix`. About 30 minutes on 2 CPU cores with
the defaults.
"""

import argparse
import datetime
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench import child  # pylint: disable=wrong-import-position
from bench import report  # pylint: disable=wrong-import-position
from training import config as config_lib  # pylint: disable=wrong-import-position
from training import trainer  # pylint: disable=wrong-import-position

PRECISIONS = ("float32", "mixed_bfloat16")
FIGURES = ("mae", "rmse", "psnr", "ssim_2d", "ssim_3d")
# What a training answered, kept in its run directory for a later call to reuse.
TRAIN_ANSWER = "bench_train.json"


def _parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--work_dir", default=os.path.join("/tmp", "bench_translation_precision"),
                 help="Phantoms, conversion and runs (kept; the phantoms and the conversion "
                      "are reused when present).")
  p.add_argument("--subjects", type=int, default=20)
  p.add_argument("--size", default="128,128,96", help="make_phantoms --size (voxels).")
  p.add_argument("--image_size", type=int, default=128, help="convert --image_size.")
  p.add_argument("--train_steps", type=int, default=400)
  p.add_argument("--seeds", default="0",
                 help="Comma-separated --seed values: a float32 and a mixed_bfloat16 "
                      "training for each (a second seed shows float32's own spread).")
  p.add_argument("--results_dir", default=None,
                 help="If set, also write RESULTS_DIR/translation_precision-YYYY-MM-DD.md.")
  # One training in this process (what the parent runs in each subprocess).
  p.add_argument("--train", choices=PRECISIONS, default=None, help=argparse.SUPPRESS)
  p.add_argument("--data", default=None, help=argparse.SUPPRESS)
  p.add_argument("--model_dir", default=None, help=argparse.SUPPRESS)
  p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  args.seeds = [int(v) for v in args.seeds.split(",") if v.strip()]
  return args


def _train_child(args):
  """Trains pix2pix in `args.train` precision; answers its last metrics."""
  steps = args.train_steps
  config = config_lib.TrainConfig(
      algo="pix2pix", data=args.data, model_dir=args.model_dir, train_steps=steps,
      precision=args.train, seed=args.seed, strategy="one_device",
      log_every=max(1, steps // 4), sample_every=steps, checkpoint_every=steps)
  result = trainer.run(config)
  child.answer({"step": result.step, "precision": result.precision,
                "global_batch_size": result.config.global_batch_size,
                **{k: float(v) for k, v in result.metrics.items()}})
  return 0


def _run(cmd):
  """Runs a pipeline binary; raises with its last line on failure."""
  start = time.perf_counter()
  result, proc = child.run(cmd)
  if proc.returncode:
    raise RuntimeError(f"{' '.join(cmd[2:4])} failed: {child.last_line(proc.stderr)}")
  print(f"  {' '.join(cmd[2:])} ({time.perf_counter() - start:.0f} s)", flush=True)
  return result


def _prepare(args):
  """The converted T1w -> T2w phantom data (made once in --work_dir)."""
  phantoms = os.path.join(args.work_dir, f"phantom-{args.size.replace(',', 'x')}-"
                          f"n{args.subjects}")
  if not os.path.isdir(os.path.join(phantoms, "T2w")):
    _run(child.command("pipeline.make_phantoms", f"--output={phantoms}",
                       f"--subjects={args.subjects}", f"--size={args.size}", "--seed=0"))
  data = f"{phantoms}-t1t2-{args.image_size}px"
  if not os.path.isfile(os.path.join(data, "manifest.json")):
    _run(child.command("pipeline.convert",
                       f"--source=paired:nifti:{phantoms}/T1w,{phantoms}/T2w",
                       f"--output={data}", "--window=percentile:0.5,99.5", "--holdout=0.2",
                       "--split_by=patient", f"--image_size={args.image_size}"))
  return data


def _trained_and_scored(args, data, seed, precision):
  """(the training's answer, eval.json's "paired") of one run, reused when its
  directory holds both from an earlier call with the same settings."""
  run_dir = os.path.join(args.work_dir, f"pix2pix-{args.image_size}px-{args.train_steps}"
                         f"steps-seed{seed}-{precision}")
  answer_json, eval_json = (os.path.join(run_dir, n) for n in (TRAIN_ANSWER, "eval.json"))
  if not (os.path.isfile(answer_json) and os.path.isfile(eval_json)):
    trained = _run(child.command(
        "bench.translation_precision", f"--train={precision}", f"--data={data}",
        f"--model_dir={run_dir}", f"--train_steps={args.train_steps}", f"--seed={seed}"))
    _run(child.command("pipeline.evaluate", f"--model_dir={run_dir}", f"--real={data}",
                       f"--output={eval_json}"))
    with open(answer_json, "w", encoding="utf-8") as f:
      json.dump(trained, f)
  else:
    print(f"  reusing {run_dir}", flush=True)
  with open(answer_json, encoding="utf-8") as f:
    trained = json.load(f)
  with open(eval_json, encoding="utf-8") as f:
    return trained, json.load(f)["paired"]


def _cell(summary):
  return f"{summary['mean']:.4g} +- {summary['sd']:.2g}" if summary.get("n") else "-"


def main(argv):
  args = _parse_args(argv)
  if args.train:
    return _train_child(args)
  when = datetime.datetime.now()
  print(f"{when:%Y-%m-%d %H:%M:%S}  {report.machine()}", flush=True)
  data = _prepare(args)
  rows, baselines = [], {}
  for seed in args.seeds:
    for precision in PRECISIONS:
      t, paired = _trained_and_scored(args, data, seed, precision)
      summary = paired["summary"]
      speed = t["steps_per_sec"] * t["global_batch_size"] if "steps_per_sec" in t else None
      rows.append([f"pix2pix, {precision}, seed {seed}",
                   *(_cell(summary["model"][k]) for k in FIGURES),
                   "" if speed is None else f"{speed:.2f}", f"{t.get('l1', float('nan')):.4f}"])
      baselines = {m: s for m, s in summary.items() if m != "model"}
      units, volumes = paired["units"] or "window units", len(paired["volumes"])
  for method, summary in baselines.items():
    rows.append([f"baseline: {method}", *(_cell(summary[k]) for k in FIGURES), "",
                 ""])
  header = ["method", f"MAE ({units})", f"RMSE ({units})", "PSNR dB", "SSIM 2-D", "SSIM 3-D",
            "images/s (aside)", "train L1 (last log)"]
  lines = report.header("pix2pix in float32 and mixed_bfloat16: paired fidelity",
                        "bench.translation_precision", when) + [
      f"Data: `{data}`: {args.subjects} phantom subjects of {args.size} voxels, T1w -> T2w, "
      f"{args.image_size} px slices, percentile window 0.5-99.5 per volume, 20% of the "
      f"subjects held out ({volumes} volumes scored). Each precision: pix2pix's defaults "
      f"(batch 4, jitter, width 64, Adam 2e-4), seed {', '.join(map(str, args.seeds))}, "
      f"{args.train_steps} steps on "
      "one device, then `pipeline.evaluate --model_dir=RUN --real=DATA` (auto mask; mean +- "
      "sd over the held-out volumes). images/s: the trainings' last log interval, one after "
      "the other (not side by side: see bench/train_step.py).",
      "",
      report.table(header, rows),
      "",
  ]
  text = "\n".join(lines)
  print()
  print(text)
  if args.results_dir:
    print(f"wrote {report.save(args.results_dir, 'translation_precision', text, when)}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
