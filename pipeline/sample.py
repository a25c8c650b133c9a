r"""Draws samples from a trained generator.

    python -m pipeline.sample --model_dir=runs/sngan-shapes --num=64 --output=grid.png

--output: `*.npz` (arrays `x` in [-1, 1] and `y` labels), `*.png` (one grid),
or a directory (one PNG per sample).
"""

import os
import sys

from absl import app
from absl import flags

flags.DEFINE_string("model_dir", None, "Run directory of pipeline.train.")
flags.DEFINE_string("checkpoint", None, "Checkpoint path or step (default: the latest).")
flags.DEFINE_integer("num", 64, "Number of samples.")
flags.DEFINE_list("labels", None, "Conditional algorithms: class indices to cycle over "
                  "(default: all classes).")
flags.DEFINE_string("output", None, "*.npz, *.png (grid) or a directory of PNGs.")
flags.DEFINE_integer("seed", 0, "Seed of the latent draws.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from training import sampling  # pylint: disable=import-outside-toplevel
  from training import samples as samples_lib  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  if not FLAGS.model_dir or not FLAGS.output:
    print("sample: error: --model_dir and --output are required", file=sys.stderr)
    sys.exit(2)
  try:
    algorithm, step = sampling.load_algorithm(FLAGS.model_dir, FLAGS.checkpoint)
    labels = [int(v) for v in FLAGS.labels] if FLAGS.labels else None
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
      samples_lib.save_png(out, samples_lib.image_grid(x))
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
