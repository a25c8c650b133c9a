r"""Translates a folder of images with a trained pix2pix, CycleGAN or UNIT model.

    python -m pipeline.translate --model_dir=runs/cyclegan-shapes_unpaired \
        --input=photos/ --output=translated/ [--direction=BtoA]

Each image is translated at its own size (padded to the network's stride and
cropped back) and written as PNG under its own name; files that cannot be read
are skipped and listed. Exit codes: 0 all translated, 1 some files skipped,
2 bad flags or model directory.
"""

import sys

from absl import app
from absl import flags

from pipeline import flags as pipeline_flags

pipeline_flags.define_translate_flags()
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  missing = [n for n in ("model_dir", "input", "output") if not FLAGS[n].value]
  if missing:
    print(f"translate: error: --{', --'.join(missing)} required", file=sys.stderr)
    sys.exit(2)
  from inference import translate  # pylint: disable=import-outside-toplevel
  config = translate.TranslateConfig(model_dir=FLAGS.model_dir, input=FLAGS.input,
                                     output=FLAGS.output, direction=FLAGS.direction,
                                     checkpoint=FLAGS.checkpoint)
  try:
    result = translate.run(config)
  except ValueError as e:
    print(f"translate: error: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"Translated {len(result.written)} image(s) into {config.output}")
  for path, reason in result.skipped:
    print(f"skipped {path}: {reason}")
  sys.exit(1 if result.skipped else 0)


if __name__ == "__main__":
  app.run(main)
