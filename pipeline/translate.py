r"""Translates images, NIfTI volumes or DICOM series with a trained pix2pix,
CycleGAN or UNIT model.

    python -m pipeline.translate --model_dir=runs/cyclegan-shapes_unpaired \
        --input=photos/ --output=translated/ [--direction=BtoA]
    python -m pipeline.translate --model_dir=runs/pix2pix-t1 --input=scan.nii.gz \
        --output=translated/ [--format=png16]
    python -m pipeline.translate --model_dir=runs/pix2pix-ct --input=dicom_dir/ \
        --output=translated/

Each image is translated at its own size (padded to the network's stride and
cropped back) and written as PNG under its own name. A NIfTI volume is
translated slice by slice (windowed as the run's data was) and written as
NIfTI with its own name, shape, affine and header; a DICOM series as
`series-<pseudonym>.nii.gz` (never as DICOM), placed where the series lies
in the patient (a series that one affine cannot place, with slices of
several orientations, uneven spacing or gantry tilt, is skipped and named).
A run trained on volumes (3-D pix2pix) slides over each scan in patches of
its training size, --overlap (default 0.5) of a patch apart, blending the
patches with Gaussian weights:

    python -m pipeline.translate --model_dir=runs/pix2pix3d-t1 --input=scan.nii.gz \
        --output=translated/ [--overlap=0.5]

--format=png16 writes 16-bit PNG slices instead; window.json records the
windows. Files that cannot be read are skipped and listed. Exit codes: 0 all translated, 1 some files
skipped, 2 bad flags or model directory.
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
  if result.kind == "images":
    print(f"Translated {len(result.written)} image(s) into {config.output}")
  else:
    print(f"Translated {result.kind} volumes into {len(result.written)} file(s) in "
          f"{config.output}")
  for path, reason in result.skipped:
    print(f"skipped {path}: {reason}")
  sys.exit(1 if result.skipped else 0)


if __name__ == "__main__":
  app.run(main)
