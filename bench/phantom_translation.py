"""python -m bench.phantom_translation --minutes=10 --context=0,2
python -m bench.phantom_translation --steps=900 --context=0,2

Paired translation on the built-in phantom, as a user runs it and as the
field scores it: `pipeline.make_phantoms` (T1w and T2w of N subjects) ->
`pipeline.convert` (paired NIfTI, whole subjects held out) -> `pipeline.train
--algo=pix2pix` for a wall-clock budget (stopped with SIGTERM: it saves a
checkpoint at a step boundary and exits 75, as on a preempted cluster) ->
`pipeline.evaluate` on the held-out subjects, beside the identity and
intensity-mapping baselines fitted on the training pairs.

One table row per `--context` value (2K+1 source slices as channels), with
MAE, PSNR and SSIM as mean +- sd over the held-out subjects (in the window's
units) and whether the model beats each baseline. The runs are sequential,
each with the whole machine for `--minutes`; or, with `--steps`, each for that
many steps, which compares the context values at equal training whatever
else runs on the machine (the wall time is then reported, not fixed). Each
row says the precision the run resolved (`--precision=auto`).
"""

import re

import argparse
import datetime
import json
import os
import tempfile

from bench import binaries
from bench import report


def _figure(summary, method, name, digits=3):
  s = summary[method].get(name, {})
  if "mean" not in s:
    return "-"
  return f"{s['mean']:.{digits}g} +- {s.get('sd', 0.0):.2g}"


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
  p.add_argument("--minutes", type=float, default=10.0, help="Training budget per run.")
  p.add_argument("--steps", type=int, default=0,
                 help="Train each run this many steps instead of --minutes (0: by time).")
  p.add_argument("--context", default="0,2", help="--context_slices values, one run each.")
  p.add_argument("--subjects", type=int, default=20)
  p.add_argument("--train_flags", default="",
                 help="More pipeline.train flags, space separated (e.g. --global_batch_size=8).")
  p.add_argument("--holdout", type=float, default=0.2)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--work_dir", default=None, help="Default: a new temporary folder (kept).")
  p.add_argument("--results_dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
                 help="Where phantom_translation-<date>.md is written.")
  args = p.parse_args(argv)
  work = args.work_dir or tempfile.mkdtemp(prefix="bench_phantom_")
  os.makedirs(work, exist_ok=True)
  phantom = os.path.join(work, "phantom")
  if not os.path.isdir(phantom):
    code, seconds, _ = binaries.run(["pipeline.make_phantoms", f"--output={phantom}",
                          f"--subjects={args.subjects}", f"--seed={args.seed}"],
                         os.path.join(work, "make_phantoms.log"))
    binaries.check(code, "make_phantoms", os.path.join(work, "make_phantoms.log"))
    print(f"{args.subjects} phantom subjects in {seconds:.0f} s", flush=True)
  rows = []
  for k in (int(x) for x in args.context.split(",")):
    data, run = os.path.join(work, f"data-k{k}"), os.path.join(work, f"run-k{k}")
    log = os.path.join(work, f"convert-k{k}.log")
    code, _, _ = binaries.run(["pipeline.convert",
                    f"--source=paired:nifti:{phantom}/T1w,{phantom}/T2w", f"--output={data}",
                    "--window=percentile:0.5,99.5", f"--holdout={args.holdout}",
                    "--split_by=patient", f"--seed={args.seed}", f"--context_slices={k}"], log)
    binaries.check(code, "convert", log)
    log = os.path.join(work, f"train-k{k}.log")
    code, seconds, _ = binaries.run(["pipeline.train", "--algo=pix2pix", f"--data={data}",
                          f"--model_dir={run}", f"--train_steps={args.steps or 1000000}",
                          "--checkpoint_every=1000000", "--sample_every=1000000",
                          f"--seed={args.seed}", *args.train_flags.split()], log,
                         timeout=None if args.steps else args.minutes * 60)
    binaries.check(code, "train", log, allowed=(0, binaries.STOPPED))
    with open(log, encoding="utf-8", errors="replace") as f:
      found = re.search(r"precision (\S+) \(--precision=", f.read())
    precision = found.group(1) if found else "?"
    steps = max((int(n.split("-")[1].split(".")[0]) for n in os.listdir(
        os.path.join(run, "checkpoints")) if n.startswith("ckpt-") and n.endswith(".index")),
                default=0)
    log = os.path.join(work, f"evaluate-k{k}.log")
    out = os.path.join(run, "eval.json")
    code, _, _ = binaries.run(["pipeline.evaluate", f"--model_dir={run}", f"--real={data}",
                    f"--output={out}"], log)
    binaries.check(code, "evaluate", log)
    with open(out, encoding="utf-8") as f:
      paired = json.load(f)["paired"]
    summary, beats = paired["summary"], paired["beats"]
    for method in sorted(summary, key=lambda m: m != "model"):  # The model first.
      verdict = ""
      if method != "model":
        won = beats.get(method, {})
        verdict = ", ".join(f"{'beaten' if v else 'NOT beaten'} on {n.split('_')[0].upper()}"
                            for n, v in won.items() if v is not None)
      rows.append([f"{k}", f"{seconds / 60:.1f} min, {steps} steps, {precision}"
                   if method == "model" else "",
                   method, _figure(summary, method, "mae"), _figure(summary, method, "psnr"),
                   _figure(summary, method, "ssim_2d"), _figure(summary, method, "ssim_3d"),
                   verdict])
    print(f"context {k}: {steps} steps in {seconds / 60:.1f} min; {paired['units']}; "
          f"beats: {json.dumps(beats)}", flush=True)
  header = ["context K", "training", "method", "MAE", "PSNR dB", "SSIM 2-D", "SSIM 3-D",
            "model vs this baseline"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(r) + " |" for r in rows]
  text = "\n".join(lines)
  print(text)
  lines = report.header("Paired translation on the phantom", "bench.phantom_translation",
                        datetime.datetime.now())
  lines += [f"pix2pix T1w -> T2w on {args.subjects} phantom subjects (seed {args.seed}), "
            f"trained with `{args.train_flags or 'the defaults'}`, "
            f"{args.holdout:.0%} of the subjects held out; figures over the held-out subjects "
            "(mean +- sd), inside the auto mask, in the window's units; baselines fitted on "
            "the training pairs.", "", text, ""]
  path = report.save(args.results_dir, "phantom_translation", "\n".join(lines))
  print(f"wrote {path}; work dir {work}")


if __name__ == "__main__":
  main()
