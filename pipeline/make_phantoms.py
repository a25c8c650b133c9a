r"""Writes a synthetic head phantom: N subjects, each as T1w and T2w MR and
CT, as BIDS-named NIfTI volumes or DICOM series (`input.medical.phantom`).

    python -m pipeline.make_phantoms --output=/data/phantom --subjects=20 --seed=0
    python -m pipeline.convert --source=paired:nifti:/data/phantom/T1w,/data/phantom/T2w \
        --output=/data/phantom-t1t2 --holdout=0.2 --split_by=patient

Offline and deterministic: the same --seed, --size and --subjects give
byte-identical files. Exit codes: 0 written; 2 bad flags (nothing written).
"""

import sys

from absl import app
from absl import flags

from input.medical import phantom_files
from input.medical import volume
from pipeline import flags as pipeline_flags

pipeline_flags.define_config_flags(phantom_files.PhantomConfig)
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    config = pipeline_flags.config_from_flags(phantom_files.PhantomConfig, FLAGS)
    out = phantom_files.run(config)
  except (ValueError, volume.MissingExtraError) as e:
    print(f"make_phantoms: error: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"Wrote {config.subjects} phantom subjects ({config.format}) into {out}")


if __name__ == "__main__":
  app.run(main)
