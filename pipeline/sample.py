r"""Draws samples from a trained generator.

    python -m pipeline.sample --model_dir=runs/sngan-shapes --num=64 --output=grid.png
    python -m pipeline.sample --model_dir=runs/sngan-shapes --interpolate=10 --rows=8 \
        --output=interpolation.png

--output: `*.npz` (arrays `x` in [-1, 1] and `y` labels), `*.png` (one grid),
or a directory (one PNG per sample). For a directory, --format=png16 writes
one 16-bit PNG per sample (the codes of the data's window) and --format=nifti
one NIfTI stack `samples.nii.gz` in modality units (1-channel DICOM or NIfTI
data; pixels of the training slices' in-plane spacing after resizing, the
third axis indexing samples, no patient space), both with window.json, the
window used:

    python -m pipeline.sample --model_dir=runs/dcgan-ct --num=16 --output=ct/ \
        --format=nifti

A run trained on volumes (pipeline.convert --volumes) writes one NIfTI
volume per sample, `NNNNN.nii.gz` in modality units, its voxels of the
training volumes' spacing (identity orientation: a sample is no patient's);
PNG formats are refused, but --output=*.png draws a grid of each sample's
three orthogonal mid-planes.

The latents are a pure function of --seed, so the same seed, checkpoint and
flags give the same samples. --interpolate=N draws --rows rows of N images,
each a spherical interpolation (slerp) between two latents; conditional
models keep one class per row.
"""

import sys

from absl import app
from absl import flags

from inference import sampling
from pipeline import flags as pipeline_flags

pipeline_flags.define_config_flags(sampling.SampleConfig)
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    config = pipeline_flags.config_from_flags(sampling.SampleConfig, FLAGS)
    num, step = sampling.run(config)
  except ValueError as e:
    print(f"sample: error: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"Wrote {num} samples from step {step} to {config.output}")


if __name__ == "__main__":
  app.run(main)
