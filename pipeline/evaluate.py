r"""Evaluates generated samples against real data: FID, KID, IS, precision/recall.

    python -m pipeline.evaluate --model_dir=runs/sngan-shapes --real=builtin:shapes \
        --inception_weights=inception_v3_weights_tf_dim_ordering_tf_kernels.h5 \
        --output=runs/sngan-shapes/eval.json
    python -m pipeline.evaluate --samples=samples.npz --real=/data/faces-tfr \
        --features=classifier.keras --feature_layer=embedding
    python -m pipeline.evaluate --model_dir=runs/sngan-ct --real=/data/ct-tfr \
        --features=classifier.keras --memorization --output=runs/sngan-ct/eval.json
    python -m pipeline.evaluate --model_dir=runs/pix2pix-t1t2 --real=/data/t1t2-tfr \
        --output=runs/pix2pix-t1t2/eval.json
    python -m pipeline.evaluate --pairs=translated/,/data/t2/ --mask=/data/masks/ \
        --output=translated/eval.json

Prints the figures and writes them, with the pinned protocol (feature network
and its weights' sha256, resize, sample counts, seed), to --output. See
`evaluation/evaluate.py`. Exit codes: 0 done, 2 bad flags, data, model or
feature network (e.g. no InceptionV3 weights offline: the message says how
to get them). `--memorization` adds a memorization audit
(`evaluation/memorization.py`): a summary line, its figures under
"memorization" in --output, and memorization_pairs.png beside it.

A translation run with --real of paired volumes, or --pairs=PRED,REF, is
scored by paired fidelity (`evaluation/paired.py`): MAE, RMSE, PSNR and SSIM
per volume, in modality units, inside a mask, beside the baselines fitted on
the training pairs; --output gets the figures, a per-volume CSV and a
picture per volume beside it. Volumes whose shape or affine differ exit 2.
"""

import json
import os
import sys

from absl import app
from absl import flags

from evaluation import evaluate
from evaluation import memorization
from evaluation import paired
from input import convert
from pipeline import flags as pipeline_flags

pipeline_flags.define_config_flags(evaluate.EvaluateConfig)
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    config = pipeline_flags.config_from_flags(evaluate.EvaluateConfig, FLAGS)
    result = evaluate.run(config)
  except (ValueError, convert.ConvertError) as e:  # Also FeatureNetworkError, ManifestError.
    print(f"evaluate: error: {e}", file=sys.stderr)
    sys.exit(2)
  if "paired" in result:
    print("\n".join(paired.report_lines(result["paired"])))
    for path in ([result["files"]["json"], result["files"]["csv"]] if result["files"] else []):
      print(f"Wrote {path}")
    if result["files"]:
      print(f"Wrote {len(result['files']['pictures'])} picture(s) in "
            f"{os.path.dirname(result['files']['pictures'][0])}")
    return
  protocol = result["protocol"]
  print(f"{protocol['num_fake']} generated vs {protocol['num_real']} real samples, features: "
        f"{protocol['feature_network']['features']} {protocol['feature_network']['layer']}")
  for name, value in result["metrics"].items():
    print(f"{name}: {value:.6g}" if isinstance(value, float) else f"{name}: {value}")
  if "memorization" in result:
    print(memorization.summary_line(result["memorization"]))
    if result["memorization"]["pairs_png"]:
      print(f"Wrote {result['memorization']['pairs_png']}")
  if config.output:
    print(f"Wrote {config.output}")
  else:
    print(json.dumps(protocol, indent=2, sort_keys=True))


if __name__ == "__main__":
  app.run(main)
