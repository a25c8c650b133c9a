r"""python -m bench.memorization_audit --results_dir=bench/results

The memorization audit (`pipeline.evaluate --memorization`,
evaluation/memorization.py) on generators whose answer is known, side by side
in one run, with the nearest-distance rule it replaced:

- exact copies of training images, and copies with Gaussian noise (sigma
  0.02 and 0.1 in [-1, 1]): copies;
- fresh draws from the same distribution (builtin:shapes with another seed),
  a blurry mean image (the training mean plus noise 0.01), and a dcgan
  trained for `--untrained_steps` steps: not copies;
- the held-out images themselves: the null;
- on a second data set made like scans (one template plus noise sigma 0.2 per
  image, 8x8), the mean image with noise 0.02: nearer to every training
  image than any held-out image is, the case the old rule flagged.

Data: builtin:shapes at 16 px, 256 train and 256 test images. Features: a
randomly initialized conv net (seeded), saved as a Keras file: the audit
needs no trained feature network for its pixel space, and a random one is a
fixed, reproducible embedding. Prints a markdown table; with
`--results_dir`, writes RESULTS_DIR/memorization_audit-YYYY-MM-DD.md. About
a minute on a 2-core CPU.
"""

import argparse
import datetime
import os
import shutil
import tempfile

import keras
import numpy as np

from bench import report
from evaluation import evaluate
from evaluation import memorization
from input import convert
from input import reader
from training import config as config_lib
from training import trainer

OLD_PERCENTILE, OLD_FRACTION = 1.0, 0.05  # The replaced rule: 5% below test_p01.


def _arrays(data_dir, split):
  ds = reader.make_dataset(reader.ReaderConfig(data_dir, split=split, shuffle_buffer=0,
                                               repeat=False, drop_remainder=False,
                                               deterministic=True), 256)
  return np.concatenate([b["image"] for b in ds.as_numpy_iterator()])


def _old_rule(samples, train, test):
  """The fraction of samples nearer a training image than the held-out 1st
  percentile, in pixels, and the old verdict."""
  levels = [memorization.to_levels(x, 255.0) for x in (samples, train, test)]
  s_nn, _ = memorization.nearest(levels[0], levels[1])
  t_nn, _ = memorization.nearest(levels[2], levels[1])
  fraction = float(np.mean(s_nn[:, 0] < np.percentile(t_nn[:, 0], OLD_PERCENTILE)))
  return fraction, fraction > OLD_FRACTION


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
  parser.add_argument("--untrained_steps", type=int, default=10)
  parser.add_argument("--results_dir", default=None)
  args = parser.parse_args()
  work = tempfile.mkdtemp(prefix="bench_memorization_")
  try:
    data = os.path.join(work, "shapes")
    convert.run(convert.ConvertConfig(source="builtin:shapes", output=data, image_size=16,
                                      max_examples=256, num_workers=1, min_shards=4))
    fresh_dir = os.path.join(work, "fresh")
    convert.run(convert.ConvertConfig(source="builtin:shapes", output=fresh_dir, seed=11,
                                      image_size=16, max_examples=256, num_workers=1))
    train, test = _arrays(data, "train"), _arrays(data, "test")
    keras.utils.set_random_seed(0)
    features = os.path.join(work, "features.keras")
    keras.Sequential([keras.layers.Input(train.shape[1:]), keras.layers.Conv2D(16, 3),
                      keras.layers.GlobalAveragePooling2D()]).save(features)
    rng = np.random.default_rng(0)
    mean = train.mean(axis=0, keepdims=True)
    generators = [
        ("exact copies of training images", "copies", train),
        ("copies + noise sigma 0.02", "copies",
         np.clip(train + rng.normal(0, 0.02, train.shape), -1, 1)),
        ("copies + noise sigma 0.1", "copies",
         np.clip(train + rng.normal(0, 0.1, train.shape), -1, 1)),
        ("fresh draws (another seed)", "none", _arrays(fresh_dir, "train")),
        ("blurry mean image + noise 0.01", "none",
         np.clip(mean + rng.normal(0, 0.01, (256,) + mean.shape[1:]), -1, 1)),
        ("held-out images (the null)", "none", test),
    ]
    run_dir = os.path.join(work, "dcgan")
    trainer.run(config_lib.TrainConfig(algo="dcgan", data=data, model_dir=run_dir,
                                       train_steps=args.untrained_steps, base_channels=8,
                                       global_batch_size=32, checkpoint_every=1000,
                                       sample_every=1000, cpu_replicas=1))
    rng2 = np.random.default_rng(1)
    template = rng2.uniform(-0.5, 0.5, (1, 8, 8, 1))
    scans = [np.clip(template + rng2.normal(0, 0.2, (256, 8, 8, 1)), -1, 1) for _ in range(2)]
    rows = []
    for name, truth, x in generators + [(f"dcgan after {args.untrained_steps} steps", "none",
                                         None)]:
      common = dict(real=data, features=features, num_real=0, memorization=True,
                    cache_stats=False, kid_subsets=5, kid_subset_size=50)
      if x is None:
        config = evaluate.EvaluateConfig(model_dir=run_dir, num_samples=256, **common)
        samples = None
      else:
        npz = os.path.join(work, "samples.npz")
        np.savez(npz, x=np.asarray(x, np.float32))
        config = evaluate.EvaluateConfig(samples=npz, trust_split=True, **common)
        samples = np.asarray(x, np.float32)
      r = evaluate.run(config)["memorization"]
      p, f = r["pixel"], r["feature"]
      old = _old_rule(samples, train, test) if samples is not None else None
      rows.append([name, truth, f"{p['sample_ratio_median']:.3f}",
                   f"{p['copies']}/{r['num_samples']}", f"{p['p_value']:.2g}",
                   f"{f['copies']}/{r['num_samples']}", f"{f['p_value']:.2g}",
                   "COPIES" if r["memorized"] else "no",
                   "-" if old is None else f"{old[0]:.1%}: {'MEMORIZED' if old[1] else 'no'}"])
    # The scan-like data set, through the audit itself (features = pixels).
    audit = memorization.Audit((8, 8, 1), 65535.0)
    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
    mean_scan = np.clip(template + rng2.normal(0, 0.02, (256, 8, 8, 1)), -1, 1)
    audit.add_train(scans[0], flat(scans[0]))
    audit.add_samples(mean_scan, flat(mean_scan))
    audit.add_test(scans[1], flat(scans[1]))
    r = audit.report()
    p = r["pixel"]
    train_levels = memorization.to_levels(scans[0], 65535.0)
    s_nn, _ = memorization.nearest(memorization.to_levels(mean_scan, 65535.0), train_levels)
    t_nn, _ = memorization.nearest(memorization.to_levels(scans[1], 65535.0), train_levels)
    old = float(np.mean(s_nn[:, 0] < np.percentile(t_nn[:, 0], OLD_PERCENTILE)))
    rows.append(["scan-like: mean image + noise 0.02", "none", f"{p['sample_ratio_median']:.3f}",
                 f"{p['copies']}/{r['num_samples']}", f"{p['p_value']:.2g}", "(pixels)", "-",
                 "COPIES" if r["memorized"] else "no",
                 f"{old:.1%}: {'MEMORIZED' if old > OLD_FRACTION else 'no'}"])
    header = ["generator", "truth", "pixel ratio (median)", "pixel copies", "pixel p",
              "feature copies", "feature p", "verdict", "old rule (pixels)"]
    held = next(r for r in rows if r[0].startswith("held-out"))
    text = ("\n".join(report.header("Memorization audit on known generators",
                                     "bench.memorization_audit", datetime.date.today())) + "\n"
            "builtin:shapes at 16 px: 256 train, 256 held-out images; random conv features "
            "(coarse: many held-out images fall under the threshold there, and the test "
            "judges samples against that rate). Last row: 8x8 images made like scans (one "
            "template plus noise 0.2), 256 train and 256 held-out. "
            f"A copy: ratio d_1 / mean(d_1..d_{memorization.NEIGHBOURS}) <= "
            f"{memorization.COPY_RATIO:.3g}; flagged at one-sided Fisher p < "
            f"{memorization.P_VALUE:g} against the held-out images ({held[3]} of them under "
            "the threshold in pixels). Old rule: more than 5% of samples nearer a training "
            "image than the held-out 1st percentile.\n\n" + report.table(header, rows) + "\n")
    print(text)
    if args.results_dir:
      print(f"wrote {report.save(args.results_dir, 'memorization_audit', text)}")
  finally:
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
  main()
