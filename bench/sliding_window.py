r"""python -m bench.sliding_window --results_dir=bench/results
python -m bench.sliding_window --sizes=128,256 --patch=32 --base_channels=32 --batch=4

Sliding-window translation of a whole volume (`inference.sliding_window`, as
`pipeline.translate` runs a run trained on volumes): its peak memory and
time, and whether Gaussian blending removes the patch edges.

The network is pix2pix's 3-D U-Net (`models.pix2pix.UNetGenerator`) for
`--patch`^3 patches at `--base_channels`, seeded and untrained: speed,
memory and seams do not depend on what it learned. Each measurement runs in
its own process (`bench/child.py`), so that its peak RSS (`ru_maxrss`) is
its own:

- `model`: TensorFlow, the network, and one warm-up call on a batch of
  `--batch` patches: what every row below starts from;
- `window,gaussian` and `window,constant`: the same, then a volume of each
  `--sizes` side translated by sliding windows (`--overlap`, `--batch`
  patches per call); its peak RSS less `model`'s is the price of the
  volume, against the sizes of the volume, the accumulators and a patch
  batch;
- `whole`: the same network on the whole volume in one call (it is fully
  convolutional): the activations of the whole volume, which the windows
  never hold.

Seams, by `sliding_window.seam_steps` (the largest step between neighbouring
voxels across a patch border, and elsewhere) and the largest deviation from
the input, on a constant image through two patch models whose seams are
known, each with both blendings:

- a blur: `--blur_layers` 3x3x3 mean filters (Conv3D, zero padding, no
  bias). It keeps a constant inside a patch and darkens the patch's outer
  voxels, as a network's zero padding does: the patch edges that blending
  should hide. The volume's own faces are darkened whatever the blending (no
  other patch covers them); the deviation is counted inside, `--blur_layers`
  voxels from the faces;
- a bias varying per patch: 0.01 x the patch's index (the seam test of
  tests/test_sliding_window.py).

The untrained U-Net is no seam test: on a constant image its own output
varies inside every patch as much as at the borders.

About 2 minutes on 2 CPU cores with the defaults.
"""

import argparse
import datetime
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=wrong-import-position
import tensorflow as tf  # pylint: disable=wrong-import-position

from bench import child as child_lib  # pylint: disable=wrong-import-position
from bench import report  # pylint: disable=wrong-import-position
from inference import sliding_window  # pylint: disable=wrong-import-position
from models import pix2pix  # pylint: disable=wrong-import-position

MIB = 1 << 20
OFFSET_STEP = 0.01  # The per-patch bias of the offset "model".
CONSTANT = 0.3  # The constant image, in the model's [-1, 1].


def _network(args):
  """The seeded U-Net as a tf.function, warmed up on a batch of `--batch`
  patches and on one patch, so that its batch axis is traced as None
  (reduce_retracing) before anything is measured: the last, smaller batch of
  a volume then runs the same graph."""
  tf.keras.utils.set_random_seed(0)
  net = pix2pix.UNetGenerator(1, image_size=(args.patch,) * 3, base_channels=args.base_channels)
  fn = tf.function(lambda x: net(x, training=False), reduce_retracing=True)
  for n in (args.batch, 1):
    fn(tf.zeros((n,) + (args.patch,) * 3 + (1,))).numpy()
  return fn, net.count_params(), net.stride


def _child(kind, args):
  fn, params, stride = _network(args)
  out = {"params": params}
  shape = (args.size,) * 3 + (1,)
  if kind.startswith("window"):
    volume = np.random.default_rng(0).random(shape, dtype=np.float32)  # float32 only.
    volume *= 2.0
    volume -= 1.0
    start = time.perf_counter()
    sliding_window.sliding_window(volume, lambda p: fn(tf.constant(p)), args.patch,
                                  args.overlap, args.batch, kind.split(",")[1])
    out["seconds"] = time.perf_counter() - start
  elif kind == "whole":  # Padded to the U-Net's stride, as pipeline.translate pads slices.
    volume = tf.zeros((1,) + (-(-args.size // stride) * stride,) * 3 + (1,))
    start = time.perf_counter()
    fn(volume).numpy()
    out["seconds"] = time.perf_counter() - start
  out["rss_mib"] = child_lib.peak_rss_mib()
  child_lib.answer(out)


def _blur(layers):
  """[n, P, P, P, 1] -> the same through `layers` 3x3x3 mean filters with zero padding."""
  net = tf.keras.Sequential([tf.keras.layers.Conv3D(
      1, 3, padding="same", use_bias=False,
      kernel_initializer=tf.keras.initializers.Constant(1.0 / 27.0)) for _ in range(layers)])
  return lambda x: net(tf.constant(x)).numpy()


def _per_patch_bias():
  """[n, ...] -> the input plus OFFSET_STEP x each patch's index in the run."""
  seen = [0]

  def fn(x):
    k = np.arange(seen[0], seen[0] + len(x), dtype=np.float32)
    seen[0] += len(x)
    return x + OFFSET_STEP * k.reshape((-1,) + (1,) * (x.ndim - 1))

  return fn


def _seams(args):
  """[(model, mode, across borders, elsewhere, max deviation inside)] on a
  constant image."""
  rows = []
  inside = (slice(args.blur_layers, args.size - args.blur_layers),) * 3
  for name, make in ((f"blur, {args.blur_layers} mean filters", lambda: _blur(args.blur_layers)),
                     (f"+ {OFFSET_STEP} x patch index", _per_patch_bias)):
    biased = make is _per_patch_bias  # Its output is meant to differ from the input.
    for mode in sliding_window.BLEND_MODES:
      y = sliding_window.sliding_window(np.full((args.size,) * 3 + (1,), CONSTANT, np.float32),
                                        make(), args.patch, args.overlap, args.batch, mode)
      across, elsewhere = sliding_window.seam_steps(y, args.patch, args.overlap,
                                                    args.blur_layers)
      deviation = float(np.abs(y[inside] - CONSTANT).max())
      rows.append([name, mode, f"{across:.2e}", f"{elsewhere:.2e}",
                   "" if biased else f"{deviation:.2e}"])
  return rows


def _measure(args, size, kind):
  """One child's answer, or {"error": its last line}."""
  result, proc = child_lib.run(child_lib.command(
      "bench.sliding_window", f"--sizes={size}", f"--patch={args.patch}",
      f"--overlap={args.overlap}", f"--batch={args.batch}",
      f"--base_channels={args.base_channels}", f"--child={kind}"))
  result = result or {"error": child_lib.last_line(proc.stderr)}
  print(size, kind, result, flush=True)
  return result


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=2)[1])
  p.add_argument("--sizes", default="128", help="The volumes' sides, comma-separated; the "
                 "seams are measured at the first.")
  p.add_argument("--patch", type=int, default=32, help="The model's patch side.")
  p.add_argument("--overlap", type=float, default=0.5, help="Fraction of a patch shared.")
  p.add_argument("--batch", type=int, default=4, help="Patches per model call.")
  p.add_argument("--base_channels", type=int, default=32, help="The U-Net's first width.")
  p.add_argument("--blur_layers", type=int, default=3, help="Mean filters of the seam test.")
  p.add_argument("--no_whole", action="store_true", help="Skip the whole-volume rows.")
  p.add_argument("--results_dir", default=None, help="Write a dated markdown file here.")
  p.add_argument("--child", default=None, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  sizes = [int(v) for v in args.sizes.split(",")]
  args.size = sizes[0]
  if args.child:
    _child(args.child, args)
    child_lib.exit_now(0)
  when = datetime.datetime.now()
  model = _measure(args, sizes[0], "model")
  if "error" in model:
    sys.exit(f"the network failed: {model['error']}")
  kinds = ["window,gaussian", "window,constant"] + ([] if args.no_whole else ["whole"])
  batch_mib = args.batch * args.patch**3 * 4 / MIB
  rows = [["model", "", "", "", f"{model['rss_mib']:.0f}", "", "", ""]]
  for size in sizes:
    n = sliding_window.num_patches((size,) * 3, (args.patch,) * 3, args.overlap)
    volume_mib = size**3 * 4 / MIB
    for kind in kinds:
      r = _measure(args, size, kind)
      cells = [kind, f"{size}^3", f"{volume_mib:.1f}", f"{2 * volume_mib:.1f}"]
      if "error" in r:
        rows.append(cells + ["error: " + r["error"], "", "", ""])
        continue
      rows.append(cells + [f"{r['rss_mib']:.0f}", f"{r['rss_mib'] - model['rss_mib']:+.0f}",
                           f"{r['seconds']:.1f}",
                           f"{n / r['seconds']:.1f} ({n})" if kind != "whole" else ""])
  lines = report.header("Sliding-window translation of a volume", "bench.sliding_window",
                        when) + [
      f"Volumes of {' and '.join(f'{s}^3' for s in sizes)} x 1 float32 through pix2pix's "
      f"3-D U-Net (`models.pix2pix.UNetGenerator`, {args.patch}^3 patches, base width "
      f"{args.base_channels}, {model.get('params', 0):,} parameters, untrained, float32) by "
      f"`inference.sliding_window` (overlap {args.overlap}, {args.batch} patches per call: "
      f"{batch_mib:.2f} MiB in), or whole in one call. Each row is its own process; peak RSS "
      "is `ru_maxrss`; extra is over the `model` row (TensorFlow, the network, warm-up calls "
      "on a batch and on one patch). The accumulators (output and weights, float32) are "
      "twice the volume.",
      "",
      report.table(["row", "volume", "volume MiB", "accumulators MiB", "peak RSS MiB",
                    "extra MiB", "seconds", "patches/s (patches)"], rows),
      "",
      f"Seams at {sizes[0]}^3 of a constant image ({CONSTANT}) through patch models whose "
      "seams are known: the largest step between neighbouring voxels across a patch border "
      "(a plane where a patch starts or ends) and elsewhere (`sliding_window.seam_steps`), "
      f"and the largest |output - {CONSTANT}|, all {args.blur_layers} voxels or more from the "
      "volume's faces.",
      "",
      report.table(["model", "blending", "across borders", "elsewhere", "max deviation"],
                   _seams(args)),
      ""]
  text = "\n".join(lines)
  print(text)
  if args.results_dir:
    print(f"\nwrote {report.save(args.results_dir, 'sliding_window', text, when)}")


if __name__ == "__main__":
  main()
