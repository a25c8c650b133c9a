r"""Draws samples from a trained generator.

    python -m pipeline.sample --model_dir=runs/sngan-shapes --num=64 --output=grid.png
    python -m pipeline.sample --model_dir=runs/sngan-shapes --interpolate=10 --rows=8 \
        --output=interpolation.png

--output: `*.npz` (arrays `x` in [-1, 1] and `y` labels), `*.png` (one grid),
or a directory (one PNG per sample). The latents are a pure function of
--seed, so the same seed, checkpoint and flags give the same samples.
--interpolate=N draws --rows rows of N images, each a spherical interpolation
(slerp) between two latents; conditional models keep one class per row.
"""

import os
import sys

from absl import app
from absl import flags

from pipeline import flags as pipeline_flags

pipeline_flags.define_sample_flags()
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from inference import sampling  # pylint: disable=import-outside-toplevel
  from training import samples as samples_lib  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  if not FLAGS.model_dir or not FLAGS.output:
    print("sample: error: --model_dir and --output are required", file=sys.stderr)
    sys.exit(2)
  columns = None
  try:
    algorithm, step = sampling.load_algorithm(FLAGS.model_dir, FLAGS.checkpoint)
    labels = [int(v) for v in FLAGS.labels] if FLAGS.labels else None
    if FLAGS.interpolate:
      x, y = sampling.interpolate(algorithm, FLAGS.rows, FLAGS.interpolate, labels, FLAGS.seed)
      columns = FLAGS.interpolate
    else:
      x, y = sampling.sample(algorithm, FLAGS.num, labels, FLAGS.seed)
  except ValueError as e:
    print(f"sample: error: {e}", file=sys.stderr)
    sys.exit(2)
  out = FLAGS.output
  if out.endswith(".npz"):
    np.savez(out, x=x, **({"y": y} if y is not None else {}))
  elif out.endswith(".png"):
    if x.ndim == 2:
      samples_lib.save_png(out, samples_lib.scatter(x))
    else:
      samples_lib.save_png(out, samples_lib.image_grid(x, columns=columns))
  else:
    if x.ndim == 2:
      print("sample: error: 2-D samples go to .npz or .png", file=sys.stderr)
      sys.exit(2)
    os.makedirs(out, exist_ok=True)
    for i, img in enumerate(x):
      samples_lib.save_png(os.path.join(out, f"{i:05d}.png"),
                           samples_lib.image_grid(img[None], columns=1, pad=0))
  print(f"Wrote {len(x)} samples from step {step} to {out}")


if __name__ == "__main__":
  app.run(main)
