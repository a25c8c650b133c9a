r"""python -m bench.volumes_3d --results_dir=bench/results --work_dir=/tmp/volumes_3d
python -m bench.volumes_3d --parts=memory          # the BUILD.md memory table alone

3-D models against 2-D ones on the built-in phantom at 32^3, as a user runs
them (`pipeline.make_phantoms` -> `pipeline.convert` -> `pipeline.train` for a
wall-clock budget, stopped with SIGTERM, which saves and exits 75 -> `sample`
/ `translate` -> `evaluate --pairs`), and the activation memory of the 3-D
networks. The parts (`--parts`), run one after the other, each training run
with the whole machine:

- `sampling`: WGAN-GP on the subjects' T1w volumes (`--volumes`) and on their
  axial slices (2-D, the same subjects, the same per-volume window), each for
  `--sampling_minutes` at `--wgan_flags` (batch 8: the default 32 leaves the
  3-D run few steps). `--samples` volumes from the 3-D model; from the 2-D
  model `--size` slices per volume, stacked in the order drawn, and reordered
  as a nearest-neighbour chain (its best case). Against the real
  volumes (the converted records, in the model's [-1, 1]):
  - the histogram distance: the 1-D Wasserstein distance (W1, in [-1, 1]
    units) between the intensities of the voxels above the air level, pooled
    over each set's volumes; its floor is W1 between two halves of the real
    subjects;
  - tissue proportions: the share of voxels above the air level in intensity
    bands set from the phantom's own labels (edges halfway between the
    median intensities of neighbouring tissues);
  - slice-to-slice consistency: the mean |x[d+1] - x[d]| between neighbouring
    axial slices, over the whole volume, beside the same along an in-plane
    axis (their ratio is 1 for isotropic smoothness).
- `translation`: pix2pix T1w -> T2w on the same held-out subjects (one seed,
  `--holdout`, `--split_by=patient`; the manifests' holdout fingerprints are
  checked equal): 3-D on paired `--patch`^3 patches, 2-D on slices, 2.5-D
  with `--context_slices=2`, each for `--minutes`. Every run trains at `--precision`
  (float32 by default: auto would give the 2-D runs bfloat16 and the 3-D run
  float32, which confounds the comparison). Each translates the held-out
  T1w volumes (`pipeline.translate`: slice by slice, or sliding 3-D windows)
  and `pipeline.evaluate --pairs` scores them against the held-out T2w
  (MAE, PSNR, SSIM; mean +- sd over subjects, and paired differences per
  subject).
- `memory`: activation memory of the 3-D networks per replica, from their
  shapes (`bench.volume_memory`), and the peak RSS of `pipeline.train` at
  `--size`^3, batch 4, measured in child processes (`os.wait4`'s ru_maxrss).

About 2 x `--sampling_minutes` + 3 x `--minutes` + 8 minutes on 2 CPU cores
(45 minutes with the defaults; `--parts=memory` alone about 2). Work files go
to `--work_dir` (kept; a step whose output is there is not redone, and the
report lists what it reused).
"""

import argparse
import datetime
import json
import os
import re
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=wrong-import-position

from bench import binaries  # pylint: disable=wrong-import-position
from bench import report  # pylint: disable=wrong-import-position
from bench import volume_memory  # pylint: disable=wrong-import-position
from input import reader  # pylint: disable=wrong-import-position
from input.medical import phantom  # pylint: disable=wrong-import-position

MIB, STOPPED = binaries.MIB, binaries.STOPPED
REUSED = []  # Steps whose output an earlier run left in --work_dir (said in the report).


# --- Running the binaries ---------------------------------------------------

def _step(work, name, cmd, done, timeout=None, allowed=(0,)):
  return binaries.step(work, name, cmd, done, REUSED, timeout, allowed)


def _train(work, name, data, run, minutes, extra):
  """pipeline.train for `minutes` of wall time; returns a description of the run."""
  log = os.path.join(work, f"train-{name}.log")
  if not os.path.isdir(os.path.join(run, "checkpoints")):
    code, seconds, _ = binaries.run(["pipeline.train", f"--data={data}", f"--model_dir={run}",
                             "--train_steps=1000000", "--checkpoint_every=1000000",
                             "--sample_every=1000000", "--log_every=50", *extra],
                            log, timeout=minutes * 60)
    binaries.check(code, f"train {name}", log, allowed=(0, STOPPED))
    with open(os.path.join(run, "bench_seconds.txt"), "w", encoding="utf-8") as f:
      f.write(f"{seconds}\n")
  else:
    REUSED.append(f"train-{name}")
  with open(os.path.join(run, "bench_seconds.txt"), encoding="utf-8") as f:
    seconds = float(f.read())
  with open(log, encoding="utf-8", errors="replace") as f:
    text = f.read()
  found = re.search(r"precision (\S+) \(--precision=", text)
  steps = max((int(n.split("-")[1].split(".")[0]) for n in os.listdir(
      os.path.join(run, "checkpoints")) if n.startswith("ckpt-") and n.endswith(".index")),
              default=0)
  batch = re.search(r"global batch (\d+)", text)
  return {"seconds": seconds, "steps": steps, "precision": found.group(1) if found else "?",
          "batch": batch.group(1) if batch else "?"}


def _describe(t):
  return f"{t['seconds'] / 60:.1f} min, {t['steps']} steps, batch {t['batch']}, {t['precision']}"


def _phantom(args, work):
  phantom = os.path.join(work, "phantom")
  size = ",".join([str(args.size)] * 3)
  _step(work, "make_phantoms", ["pipeline.make_phantoms", f"--output={phantom}",
                                f"--subjects={args.subjects}", f"--seed={args.seed}",
                                f"--size={size}"], phantom)
  return phantom


# --- Sampling ---------------------------------------------------------------

def _real_volumes(data):
  """{key: [D, H, W] float32 in [-1, 1]} of a converted volume dataset (split train)."""
  ds = reader.make_dataset(reader.ReaderConfig(data, shuffle_buffer=0, repeat=False,
                                               drop_remainder=False, with_keys=True), 1)
  return {b["key"].numpy()[0].decode(): b["image"].numpy()[0, ..., 0] for b in ds}


def _tissue_levels(args, keys):
  """Median [-1, 1] intensity of each phantom tissue over the subjects `keys`,
  windowed as pipeline.convert's auto window for MR (percentile 0.5, 99.5 per
  volume); checked against the records by the caller."""
  by_label = {name: [] for name in phantom.LABELS}
  windowed = {}
  for key in keys:
    index = int(re.search(r"sub-(\d+)", key).group(1))
    s = phantom.make_subject(args.seed, index, (args.size,) * 3)
    raw = s.images["T1w"].astype(np.float64)
    lo, hi = np.percentile(raw, [0.5, 99.5])
    w = np.clip((raw - lo) / (hi - lo) * 2 - 1, -1, 1)
    windowed[key] = w
    for i, name in enumerate(phantom.LABELS):
      if (s.labels == i).any():
        by_label[name].append(w[s.labels == i])
  levels = {n: float(np.median(np.concatenate(v))) for n, v in by_label.items() if v}
  shares = {n: float(sum(x.size for x in v)) for n, v in by_label.items() if v}
  total = sum(shares.values())
  return levels, {n: s / total for n, s in shares.items()}, windowed


def _w1(a, b, points=2001):
  """1-D Wasserstein distance between the samples `a` and `b` (the mean
  |quantile difference| over `points` evenly spaced probabilities)."""
  q = np.linspace(0, 1, points)
  return float(np.mean(np.abs(np.quantile(a, q) - np.quantile(b, q))))


def _consistency(vols):
  """Per volume: mean |x[d+1] - x[d]| (axial neighbours) and mean |x[:, h+1] - x[:, h]|."""
  axial = [float(np.abs(np.diff(v, axis=0)).mean()) for v in vols]
  inplane = [float(np.abs(np.diff(v, axis=1)).mean()) for v in vols]
  return np.array(axial), np.array(inplane)


def _chain(slices):
  """`slices` ([N, H, W]) reordered as a greedy nearest-neighbour chain (mean
  |diff|), from the darkest: the 2-D model's best stacking of its own
  slices, which a user of a 2-D model does not have."""
  left = list(range(len(slices)))
  order = [min(left, key=lambda i: slices[i].mean())]
  left.remove(order[0])
  while left:
    last = slices[order[-1]]
    nearest = min(left, key=lambda i: np.abs(slices[i] - last).mean())
    order.append(nearest)
    left.remove(nearest)
  return slices[order]


def _ms(x, digits=3):
  return f"{np.mean(x):.{digits}f} +- {np.std(x):.{digits}f}"


def sampling(args, work, phantom):
  """The sampling part; returns its report lines."""
  print("sampling: WGAN-GP 3-D vs 2-D on T1w", flush=True)
  vol_data, slice_data = os.path.join(work, "t1-volumes"), os.path.join(work, "t1-slices")
  src = f"--source=nifti:{phantom}/T1w"
  _step(work, "convert-t1-volumes", ["pipeline.convert", src, f"--output={vol_data}", "--volumes",
                                     f"--volume_size={args.size}", f"--seed={args.seed}"],
        os.path.join(vol_data, "manifest.json"))
  _step(work, "convert-t1-slices", ["pipeline.convert", src, f"--output={slice_data}",
                                    f"--image_size={args.size}", f"--seed={args.seed}"],
        os.path.join(slice_data, "manifest.json"))
  common = ["--algo=wgan_gp", f"--seed={args.seed}", f"--precision={args.precision}",
            *args.wgan_flags.split(), *args.train_flags.split()]
  runs = {}
  for name, data in (("3-D", vol_data), ("2-D", slice_data)):
    run = os.path.join(work, f"run-wgan-{name}")
    runs[name] = (run, _train(work, f"wgan-{name}", data, run, args.sampling_minutes, common))
    print(f"  {name}: {_describe(runs[name][1])}", flush=True)
  n = args.samples
  out3, out2 = os.path.join(work, "samples-3d.npz"), os.path.join(work, "samples-2d.npz")
  _step(work, "sample-3d", ["pipeline.sample", f"--model_dir={runs['3-D'][0]}",
                            f"--output={out3}", f"--num={n}", f"--seed={args.seed + 1}"], out3)
  _step(work, "sample-2d", ["pipeline.sample", f"--model_dir={runs['2-D'][0]}",
                            f"--output={out2}", f"--num={n * args.size}",
                            f"--seed={args.seed + 1}"], out2)
  fake3 = np.load(out3)["x"][..., 0]
  fake2 = np.load(out2)["x"][..., 0].reshape(n, args.size, args.size, args.size)
  real = _real_volumes(vol_data)
  keys = sorted(real)
  levels, label_shares, windowed = _tissue_levels(args, keys)
  # The records are the phantom windowed as above (orientation aside): their
  # sorted voxels agree, so the labels' levels hold in the records' units.
  unit_gap = max(float(np.abs(np.sort(windowed[k].ravel()) - np.sort(real[k].ravel())).max())
                 for k in keys)
  real = np.stack([real[k] for k in keys])
  air = (levels["air"] + levels["skull"]) / 2  # Between air and the darkest head tissue.
  edges = [air, (levels["csf"] + levels["grey"]) / 2, (levels["grey"] + levels["white"]) / 2]
  half = len(real) // 2
  sets = {"real (all subjects)": real, "real, first half": real[:half],
          "real, second half": real[half:], "3-D WGAN-GP": fake3,
          "2-D WGAN-GP, slices stacked": fake2,
          "2-D WGAN-GP, slices chained": np.stack([_chain(v) for v in fake2])}

  def head(v):
    return v[v > air]

  def bands(v):
    h = head(v)
    return [float(np.mean(h < edges[1])), float(np.mean((h >= edges[1]) & (h < edges[2]))),
            float(np.mean(h >= edges[2]))]

  rows = []
  for name, v in sets.items():
    if name.startswith("real,"):
      other = sets["real, second half" if name.endswith("first half") else "real, first half"]
      w1 = f"{_w1(head(v), head(other)):.4f} (vs the other half: the floor)"
    elif name.startswith("real"):
      w1 = "-"
    else:
      w1 = f"{_w1(head(v), head(real)):.4f}"
    axial, inplane = _consistency(v)
    b = bands(v)
    rows.append([name, str(len(v)), w1, f"{np.mean(v > air):.3f}",
                 " / ".join(f"{x:.2f}" for x in b), _ms(axial), _ms(inplane),
                 f"{np.mean(axial) / np.mean(inplane):.2f}"])
  header = ["volumes", "n", "W1 to the real voxels above air", "share above air",
            "dark / grey / bright share", "axial neighbour |diff|", "in-plane neighbour |diff|",
            "axial / in-plane"]
  text = report.table(header, rows)
  print(text, flush=True)
  a3, a2, ac, ar = (float(np.mean(_consistency(x)[0])) for x in (
      fake3, fake2, sets["2-D WGAN-GP, slices chained"], real))
  w3, w2 = _w1(head(fake3), head(real)), _w1(head(fake2), head(real))
  floor = _w1(head(real[:half]), head(real[half:]))
  lines = [
      "## Sampling: 3-D WGAN-GP against a 2-D WGAN-GP's slices stacked", "",
      f"T1w of {len(real)} phantom subjects at {args.size}^3 (seed {args.seed}), "
      f"pipeline.train --algo=wgan_gp `--precision={args.precision} {args.wgan_flags} "
      f"{args.train_flags}`, otherwise its defaults, each for {args.sampling_minutes:g} min of "
      "wall time, one after the other on the same (shared) machine:", "",
      f"- 3-D (`--volumes --volume_size={args.size}`): {_describe(runs['3-D'][1])}",
      f"- 2-D (axial slices, `--image_size={args.size}`): {_describe(runs['2-D'][1])}", "",
      f"{n} volumes from the 3-D model; {n} x {args.size} slices from the 2-D model, "
      f"stacked {args.size} to a volume in the order drawn ('stacked'), and the same slices "
      "reordered in each volume as a greedy nearest-neighbour chain by mean |diff|, from the "
      "darkest ('chained': the 2-D model's best case, which its user does not have). All in "
      "the model's [-1, 1] "
      "(the per-volume percentile 0.5-99.5 window both conversions use). 'Above air': "
      f"voxels > {air:.3f}, halfway between the median air and skull intensities of the "
      "phantom's labels. W1: the 1-D Wasserstein distance between the pooled intensities "
      "of those voxels, in [-1, 1] units (histogram-free; 2,001 quantiles). The floor is "
      f"W1 between two halves of the real subjects ({half} against {len(real) - half}). "
      f"Intensity bands, from the labels' median intensities (CSF {levels['csf']:.3f}, "
      f"grey {levels['grey']:.3f}, white {levels['white']:.3f}, scalp {levels['scalp']:.3f}, "
      f"skull {levels['skull']:.3f}): dark < {edges[1]:.3f} (skull, CSF) <= grey < "
      f"{edges[2]:.3f} <= bright (white matter, scalp fat). Label shares of the whole grid "
      "(air the rest) in the real phantoms: " +
      ", ".join(f"{k} {v:.3f}" for k, v in label_shares.items() if k != "air") +
      f". Check of units: the records' sorted voxels equal the labels' windowed phantom "
      f"within {unit_gap:.1e}.", "",
      "Neighbour |diff|: the mean absolute difference between neighbouring voxels along "
      "the axial axis (between slices) and along an in-plane axis, per volume, mean +- sd "
      "over volumes, whole volume.", "", text, "",
      f"Histogram distance: 3-D {w3:.4f}, 2-D stacked {w2:.4f} (2-D / 3-D = {w2 / w3:.2f}); "
      f"the real-vs-real floor {floor:.4f} (3-D is {w3 / floor:.1f}x the floor, 2-D "
      f"{w2 / floor:.1f}x). Slice-to-slice |diff|: real {ar:.3f}, 3-D {a3:.3f} "
      f"({a3 / ar:.2f}x real), 2-D stacked {a2:.3f} ({a2 / ar:.2f}x real), 2-D chained "
      f"{ac:.3f} ({ac / ar:.2f}x real).", ""]
  return lines


# --- Translation ------------------------------------------------------------

def _link_subjects(src, dst, subjects):
  """`dst` with a link to each of `subjects`' folders of the BIDS folder `src`."""
  os.makedirs(dst, exist_ok=True)
  for s in subjects:
    if not os.path.exists(os.path.join(dst, s)):
      os.symlink(os.path.join(src, s), os.path.join(dst, s))


def translation(args, work, phantom):
  """The translation part; returns its report lines."""
  print("translation: pix2pix T1w -> T2w, 3-D vs 2-D vs 2.5-D", flush=True)
  src = f"--source=paired:nifti:{phantom}/T1w,{phantom}/T2w"
  split = [f"--holdout={args.holdout}", "--split_by=patient", f"--seed={args.seed}"]
  models = {
      "3-D": ["--volumes", f"--volume_size={args.size}", f"--patch_size={args.patch}",
              f"--patches_per_volume={args.patches_per_volume}"],
      "2-D": [f"--image_size={args.size}"],
      "2.5-D (K=2)": [f"--image_size={args.size}", "--context_slices=2"],
  }
  data = {}
  for name, flags in models.items():
    tag = re.sub(r"[^a-z0-9]+", "", name.lower())
    data[name] = os.path.join(work, f"t1t2-{tag}")
    _step(work, f"convert-t1t2-{tag}", ["pipeline.convert", src, f"--output={data[name]}",
                                        *split, *flags],
          os.path.join(data[name], "manifest.json"))
  holdouts = {}
  for name, d in data.items():
    with open(os.path.join(d, "manifest.json"), encoding="utf-8") as f:
      holdouts[name] = json.load(f)["holdout"]
  fingerprints = {h["fingerprint"] for h in holdouts.values()}
  if len(fingerprints) != 1:
    raise SystemExit(f"the holdout fingerprints differ: {holdouts}")
  test = sorted(holdouts["3-D"]["test_groups"])
  t1, t2 = os.path.join(work, "heldout", "T1w"), os.path.join(work, "heldout", "T2w")
  _link_subjects(os.path.join(phantom, "T1w"), t1, test)
  _link_subjects(os.path.join(phantom, "T2w"), t2, test)
  rows, results, per_subject = [], {}, {}
  for name, flags in models.items():
    tag = re.sub(r"[^a-z0-9]+", "", name.lower())
    run = os.path.join(work, f"run-pix2pix-{tag}")
    trained = _train(work, f"pix2pix-{tag}", data[name], run, args.minutes,
                     ["--algo=pix2pix", f"--seed={args.seed}", f"--precision={args.precision}",
                      *args.train_flags.split()])
    print(f"  {name}: {_describe(trained)}", flush=True)
    pred = os.path.join(work, f"pred-{tag}")
    timed = _step(work, f"translate-{tag}", ["pipeline.translate", f"--model_dir={run}",
                                             f"--input={t1}", f"--output={pred}"],
                  os.path.join(pred, ".done"))
    if timed:
      with open(os.path.join(pred, ".done"), "w", encoding="utf-8") as f:
        f.write(f"{timed[0]}\n")
    out = os.path.join(work, f"eval-{tag}", "eval.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    _step(work, f"evaluate-{tag}", ["pipeline.evaluate", f"--pairs={pred},{t2}",
                                    f"--window={args.eval_window}", f"--output={out}"], out)
    with open(out, encoding="utf-8") as f:
      paired = json.load(f)["paired"]
    summary = paired["summary"]
    figures = summary.get("model") or next(iter(summary.values()))
    results[name] = figures
    per_subject[name] = {v["name"]: v.get("model") or next(
        x for x in v.values() if isinstance(x, dict) and "mae" in x)
        for v in paired["volumes"]}
    rows.append([name, _describe(trained)] +
                [_figure(figures, k) for k in ("mae", "psnr", "ssim_2d", "ssim_3d")])
    units = paired.get("units")
  text = report.table(["model", "training", "MAE", "PSNR dB", "SSIM 2-D", "SSIM 3-D"], rows)
  print(text, flush=True)
  best = min(results, key=lambda n: results[n]["mae"]["mean"])
  cmp = []
  for name in results:
    if name == best:
      continue
    a, b = results[best], results[name]
    cmp.append(f"{best} against {name}: MAE {a['mae']['mean']:.4g} vs {b['mae']['mean']:.4g} "
               f"({100 * (1 - a['mae']['mean'] / b['mae']['mean']):.0f}% lower), PSNR "
               f"{a['psnr']['mean'] - b['psnr']['mean']:+.2f} dB, SSIM 2-D "
               f"{a['ssim_2d']['mean'] - b['ssim_2d']['mean']:+.3f}, SSIM 3-D "
               f"{a.get('ssim_3d', {}).get('mean', float('nan')) - b.get('ssim_3d', {}).get('mean', float('nan')):+.3f}.")
  # Paired over the same held-out subjects: the subject-to-subject spread
  # (sd above) is common to the models and cancels here.
  diff_rows = []
  names = list(results)
  for i, a in enumerate(names):
    for b in names[i + 1:]:
      cells = [f"{a} - {b}"]
      for k in ("mae", "psnr", "ssim_2d", "ssim_3d"):
        d = [per_subject[a][s_][k] - per_subject[b][s_][k] for s_ in test]
        wins = sum(x < 0 if k == "mae" else x > 0 for x in d)
        cells.append(f"{np.mean(d):+.4g} +- {np.std(d):.2g} ({wins}/{len(d)})")
      diff_rows.append(cells)
  diff_text = report.table(["difference", "MAE", "PSNR dB", "SSIM 2-D", "SSIM 3-D"], diff_rows)
  print(diff_text, flush=True)
  lines = [
      "## Translation: 3-D pix2pix against 2-D and 2.5-D at equal wall time", "",
      f"pix2pix T1w -> T2w on {args.subjects} phantom subjects at {args.size}^3 (seed "
      f"{args.seed}); `--holdout={args.holdout} --split_by=patient --seed={args.seed}` in "
      f"every conversion (holdout fingerprint {fingerprints.pop()[:16]}..., the same in the "
      f"three manifests), held out: {', '.join(test)}. 3-D: `--volumes "
      f"--volume_size={args.size} --patch_size={args.patch} "
      f"--patches_per_volume={args.patches_per_volume}` (paired patches in the body mask); "
      f"2-D: axial slices at {args.size} px; 2.5-D: the same with `--context_slices=2`. "
      f"Each trained for {args.minutes:g} min of wall time with pix2pix's defaults, "
      f"`--precision={args.precision}`{' and ' + args.train_flags if args.train_flags else ''}, "
      "one after the other on the shared machine. Each run's `pipeline.translate` "
      "(3-D: Gaussian sliding windows, overlap 0.5; 2-D/2.5-D: slice by slice) of the held-out "
      f"T1w NIfTI volumes, scored by `pipeline.evaluate --pairs=PRED,REF "
      f"--window={args.eval_window}` against the held-out T2w: per subject inside the auto "
      f"mask, MAE in {units or 'modality units'}, PSNR and SSIM over the window's width; "
      "mean +- sd over the held-out subjects.", "", text, "",
      f"Lowest MAE: {best}. " + " ".join(cmp), "",
      "Paired over the held-out subjects (first model minus second, per subject: mean +- "
      "sd; in brackets the subjects where the first model is better):", "", diff_text, ""]
  return lines


def _figure(figures, name, digits=4):
  s = figures.get(name, {})
  if "mean" not in s:
    return "-"
  return f"{s['mean']:.{digits}g} +- {s.get('sd', 0.0):.2g}"


# --- Main -------------------------------------------------------------------

def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
  p.add_argument("--parts", default="memory,sampling,translation",
                 help="Comma-separated: memory, sampling, translation (run in that order).")
  p.add_argument("--minutes", type=float, default=6.0,
                 help="Training wall time per translation run.")
  p.add_argument("--sampling_minutes", type=float, default=8.0,
                 help="Training wall time per WGAN-GP run.")
  p.add_argument("--wgan_flags", default="--global_batch_size=8",
                 help="pipeline.train flags of both WGAN-GP runs (the default batch, 32, "
                 "leaves the 3-D run few steps in minutes on 2 cores).")
  p.add_argument("--subjects", type=int, default=20)
  p.add_argument("--size", type=int, default=32, help="Phantom grid side (voxels), and the "
                 "volume and slice size of every conversion (no resampling).")
  p.add_argument("--samples", type=int, default=16, help="Volumes sampled from each GAN.")
  p.add_argument("--patch", type=int, default=16, help="3-D pix2pix's patch side.")
  p.add_argument("--patches_per_volume", type=int, default=16)
  p.add_argument("--holdout", type=float, default=0.2)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--precision", default="float32",
                 help="--precision of every training run (auto would give the 2-D runs "
                 "bfloat16 and the 3-D runs float32 on a CPU with bfloat16).")
  p.add_argument("--eval_window", default="percentile:0.5,99.5",
                 help="pipeline.evaluate --window for every model (the conversions' auto).")
  p.add_argument("--train_flags", default="", help="More pipeline.train flags, space separated.")
  p.add_argument("--memory_sizes", default="64,128")
  p.add_argument("--memory_batches", default="1,2,4,8")
  p.add_argument("--rss_steps", type=int, default=10)
  p.add_argument("--work_dir", default=None, help="Default: a new temporary folder (kept).")
  p.add_argument("--results_dir", default=None, help="Write volumes_3d-<date>.md here.")
  args = p.parse_args(argv)
  work = args.work_dir or tempfile.mkdtemp(prefix="bench_volumes_3d_")
  os.makedirs(work, exist_ok=True)
  when = datetime.datetime.now()
  parts = args.parts.split(",")
  unknown = set(parts) - {"memory", "sampling", "translation"}
  if unknown:
    raise SystemExit(f"--parts: unknown {sorted(unknown)}; valid: memory, sampling, translation")
  phantom = _phantom(args, work)
  body = []
  for name, fn in (("memory", lambda *a: volume_memory.memory(*a, REUSED)),
                   ("sampling", sampling), ("translation", translation)):
    if name in parts:
      start = time.time()
      body += fn(args, work, phantom)
      print(f"{name}: {(time.time() - start) / 60:.1f} min", flush=True)
  lines = report.header("3-D volumes against 2-D slices on the phantom", "bench.volumes_3d",
                        when)
  lines += ["The machine was shared with other engineers' tests while this ran: absolute "
            "times are noise; the runs of a comparison ran one after the other, each for the "
            "same wall time, so a load that changed between them favours one of them "
            "(the step counts say by how much).", ""]
  if REUSED:
    lines += ["Steps whose outputs were already in --work_dir, from an earlier part or an "
              "earlier run of this command, and were reused (training runs with the wall time "
              f"and steps measured then): {', '.join(REUSED)}.", ""]
  text = "\n".join(lines + body)
  print(text)
  if args.results_dir:
    print(f"wrote {report.save(args.results_dir, 'volumes_3d', text, when.date())}; "
          f"work dir {work}")
  else:
    print(f"work dir {work}")


if __name__ == "__main__":
  main()
