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

from inference import translate
from pipeline import flags as pipeline_flags

pipeline_flags.define_config_flags(translate.TranslateConfig)
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    config = pipeline_flags.config_from_flags(translate.TranslateConfig, FLAGS)
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
