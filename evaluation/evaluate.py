"""Comparing generated samples with real data: the library behind `pipeline.evaluate`.

    from evaluation import evaluate
    result = evaluate.run(evaluate.EvaluateConfig(real="builtin:shapes",
                                                  model_dir="runs/sngan-shapes"))
    result["metrics"]  # fid, kid, kid_stderr, precision, recall[, inception_score]

The protocol, pinned and returned with the figures (and written to
`--output` as JSON):
- the feature network, its weights file and that file's sha256, the layer,
  the resize method and input size (`evaluation.features.Protocol`);
- the number of real and generated samples, the seed, the real data's
  manifest sha256 and split;
- generated images are quantized to the real data's bit depth (8 bits:
  `round((x + 1) * 127.5)`) before the features, so that evaluating a model
  directly equals evaluating its samples saved as PNG; real images already
  are;
- FID uses every sample (streamed: `metrics.FeatureStats`); KID (100 subsets
  of 1,000 by default) and precision/recall (k = 3) use a uniform random
  subset of at most `max_features` feature vectors per side.

Real statistics are cached in `stats_cache` per (manifest sha256, split,
feature protocol, count, feature cap): a second evaluation against the same
data reads them instead of recomputing.

2-D vector data (`builtin:ring2d`, `builtin:grid2d`): the features are the
points themselves, and the figures add modes covered and the fraction of
high-quality samples (`evaluation.mode_coverage`, the VEEGAN/PacGAN protocol)
on the first 2,500 generated samples.

Volumes (`pipeline.convert --volumes`): the 2-D feature network sees each
volume's three orthogonal mid-planes, each an image, so the figures are
those of the mid-plane images (`evaluation.volume_features`; the protocol
says so under "volumes").

`--memorization` adds a memorization audit (`evaluation.memorization`): each
sample's distance to its nearest training image against the held-out
images', under "memorization" in the results, with the picture
`memorization_pairs.png` beside `--output`.
"""

import dataclasses
import hashlib
import json
import os
import time

from absl import logging
import numpy as np

import algorithms
from evaluation import audit_split
from evaluation import features as features_lib
from evaluation import memorization as memorization_lib
from evaluation import metrics
from evaluation import mode_coverage
from evaluation import paired
from evaluation import paired_data
from evaluation import volume_features
from evaluation.real_data import Real, real_batches, resolve_real  # Also evaluate.Real etc.
from inference import sampling
from input import cache
from input import images as images_lib
from input import manifest as manifest_lib
from settings import setting
from training import run_dir

STATS_FORMAT = 1
PR_K = 3  # Kynkaanniemi et al. 2019.
MODE_COVERAGE_SAMPLES = 2500  # The VEEGAN / PacGAN protocol.


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
  """What `pipeline.evaluate` does: each field is one of its flags (settings/:
  default and help written here only). `run` needs exactly one of `model_dir`
  and `samples`; `DuringTraining` sets neither (it samples the generator being
  trained)."""
  real: str | None = setting(None,
      "Real data: a directory made by pipeline.convert, a folder of images, or a source KIND:ARG "
      "(builtin:NAME, folder:DIR, tfds:NAME, npz:FILE) converted into the data cache on first "
      "use. Required except with --pairs.")
  model_dir: str | None = setting(None,
      "Generated samples from this run directory of pipeline.train (a sampling algorithm); a "
      "translation run with --real of paired volumes: the paired fidelity of the held-out pairs "
      "and baselines. Give one of --model_dir, --samples and --pairs.")
  pairs: str | None = setting(None,
      "PRED,REF: the paired fidelity of two folders of NIfTI volumes or DICOM series (a series "
      "by its folder), matched by name; volumes whose shape or affine differ are refused.")
  mask: str = setting("auto",
      "Paired fidelity: auto (the body: above the window's low end or Otsu's threshold, holes "
      "filled, largest component), none, or (--pairs) a folder of masks matched by name.")
  window: str | None = setting(None,
      "--pairs: the window, as pipeline.convert's --window. Default: PRED/window.json's target "
      "window (pipeline.translate's), else each reference's range.")
  slice_axis: str | None = setting(None,
      "--pairs: the axis of the 2-D slices (SSIM 2-D, pictures). Default: axial.",
      choices=paired_data.SLICE_AXES)
  samples: str | None = setting(None,
      "Generated samples from a .npz (array x in [-1, 1], as written by pipeline.sample) or a "
      "folder of images (searched recursively; e.g. the output of pipeline.translate).")
  checkpoint: str | None = setting(None,
      "With --model_dir: checkpoint path, step, or best (--keep_best's; default: the latest).")
  real_split: str = setting("train",
      "Split of the real data (unpaired data: name a domain, e.g. testB).")
  features: str = setting("inception",
      "Feature network: inception (InceptionV3 pool3 at 299x299, ImageNet weights), or the path "
      "of a Keras model file or SavedModel.")
  inception_weights: str | None = setting(None,
      "Local InceptionV3 weights file (inception_v3_weights_tf_dim_ordering_tf_kernels.h5). "
      "Default: Keras's cached download.")
  feature_layer: str | None = setting(None,
      "--features=PATH: the layer (Keras) or output (SavedModel) to use. Default: the penultimate"
      " layer (Keras), the only output (SavedModel).")
  num_samples: int = setting(10_000, "Generated samples to evaluate.")
  num_real: int = setting(10_000, "Real examples to compare with (0: the whole split).")
  seed: int = setting(0, "Seed of the latent draws and of KID's subsets.")
  batch_size: int = setting(100, "Images per feature-network call.")
  kid_subsets: int = setting(100, "KID: number of subsets.")
  kid_subset_size: int = setting(1000,
      "KID: samples per subset (capped at the number of kept features).")
  max_features: int = setting(10_000,
      "KID and precision/recall use a uniform random subset of at most this many feature vectors "
      "per side (FID uses every sample).")
  stats_cache: str | None = setting(None,
      "Cache of real-data statistics (default: <data cache>/eval_stats).")
  cache_stats: bool = setting(True,
      "Read and write real-data statistics in --stats_cache (--nocache_stats: compute them "
      "every time).")
  data_cache: str | None = setting(None,
      "Cache of converted sources (default: $GAN_PIPELINE_DATA or ~/.cache/gan_pipeline).")
  image_size: int | None = setting(None, "Size to convert folder:/builtin: real data to.")
  output: str | None = setting(None, "Write the results and the protocol to this JSON file.")
  memorization: bool = setting(False,
      "Also audit memorization: a sample is a copy when it is much closer to one training image "
      "than to its nearest others (Carlini et al. 2023; features and pixels); the run is "
      "flagged when samples are copies more often than held-out images are. Needs a "
      "patient-level test split that the model was trained against (pipeline.convert "
      "--holdout --split_by=patient), checked first. The pairs picture goes beside --output.")
  trust_split: bool = setting(False,
      "--memorization and paired fidelity: skip the check that --real's held-out split is the "
      "one the model was trained against (and, for --memorization, patient-level): you know "
      "that it is.")
  memorization_k: int = setting(8,
      "--memorization: (sample, nearest training image) pairs in memorization_pairs.png.")

  def validate(self):
    """Raises ValueError naming the first bad value."""
    given = [name for name in ("model_dir", "samples", "pairs") if getattr(self, name)]
    if len(given) != 1:
      raise ValueError("give exactly one of --model_dir, --samples and --pairs, got "
                       f"{' '.join(f'--{n}={getattr(self, n)!r}' for n in given) or 'none'}")
    if not self.pairs and not self.real:
      raise ValueError("--real is required")
    paired.validate(self)
    for name in ("num_samples", "batch_size", "kid_subsets", "kid_subset_size",
                 "max_features", "memorization_k"):
      if getattr(self, name) < 1:
        raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
    if self.num_real < 0:
      raise ValueError(f"--num_real must be >= 0, got {self.num_real}")


# --- Generated samples -----------------------------------------------------------


def _quantize(x, max_value):
  """[-1, 1] floats -> the nearest of the real data's levels, still in [-1, 1]."""
  x = np.clip(np.asarray(x, np.float32), -1.0, 1.0)
  return (np.round((x + 1.0) * (max_value / 2.0)) * (2.0 / max_value) - 1.0).astype(np.float32)


def _fake_source(config, real):
  """(description dict, iterator over [b, ...] batches in [-1, 1], count)."""
  num, batch_size = config.num_samples, config.batch_size
  if config.model_dir:
    algorithm, step = sampling.load_algorithm(config.model_dir, config.checkpoint)
    if algorithm.inference == algorithms.TRANSLATION:
      raise ValueError(
          f"{config.model_dir!r} holds a {algorithm.config.algo} run: translate held-out "
          "images first (python -m pipeline.translate --input=... --output=OUT) and evaluate "
          "the folder with --samples=OUT against the target domain (--real_split=testB); "
          "paired volumes (paired:nifti: or paired:dicom: data) are scored directly")
    shape = tuple(algorithm.data.shape)
    if shape != real.shape:
      raise ValueError(f"the model makes {shape} samples but --real has {real.shape}")
    batches = (x for x, _ in sampling.iter_samples(algorithm, num, seed=config.seed,
                                                   batch_size=batch_size))
    return {"model_dir": os.path.abspath(config.model_dir), "step": step,
            "algo": algorithm.config.algo, "latents": f"stateless normal, seed [{config.seed}, "
                                                      "777] (as pipeline.sample)"}, batches, num
  path = config.samples
  if path.endswith(".npz"):
    with np.load(path) as f:
      if "x" not in f.files:
        raise ValueError(f"--samples {path!r} has no array 'x' (it has {', '.join(f.files)})")
      x = f["x"]
    if tuple(x.shape[1:]) != real.shape:
      raise ValueError(f"--samples {path!r} holds {tuple(x.shape[1:])} samples but --real has "
                       f"{real.shape}")
    if len(x) < num:
      logging.warning("--samples %s holds %d samples, fewer than --num_samples=%d; using all",
                      path, len(x), num)
    x = x[:num]
    batches = (x[i:i + batch_size] for i in range(0, len(x), batch_size))
    return {"npz": os.path.abspath(path)}, batches, len(x)
  if os.path.isdir(path):
    if real.is_vector or len(real.shape) == 4:
      raise ValueError(f"{'2-D vector data' if real.is_vector else 'volume data'} is compared "
                       "with a .npz or a model, not a folder of images")
    files = [os.path.join(path, f) for f in images_lib.list_image_files(path)[0][:num]]
    if not files:
      raise ValueError(f"--samples {path!r} holds no images "
                       f"({', '.join(images_lib.IMAGE_EXTENSIONS)})")
    h, w, c = real.shape
    spec = images_lib.ImageSpec(h, w, c, 8 if real.max_value == 255.0 else 16)

    def batches():
      for i in range(0, len(files), batch_size):
        out = []
        for f in files[i:i + batch_size]:
          arr = images_lib.to_spec(images_lib.read_file(f), spec).astype(np.float32)
          out.append(arr * (2.0 / real.max_value) - 1.0)
        yield np.stack(out)

    return ({"folder": os.path.abspath(path),
             "fitting": f"input.images.to_spec to {h}x{w}x{c} (center crop, Lanczos) where "
                        "an image differs"}, batches(), len(files))
  raise ValueError(f"--samples {path!r} is neither a .npz file nor a folder of images")


# --- Features and statistics ------------------------------------------------------


def _accumulate(net, batches, max_kept, want_logits, quantize=None, keep_first=0,
                observe=None):
  """Features of every batch: (FeatureStats, logits or None, the first
  `keep_first` inputs as given, for mode coverage); `observe(x, features)`
  also sees each (quantized) batch."""
  stats = metrics.FeatureStats(max_kept=max_kept)
  logits, first, kept = [], [], 0
  for x in batches:
    if quantize is not None:
      x = _quantize(x, quantize)
    if kept < keep_first:
      first.append(np.asarray(x[:keep_first - kept], np.float32))
      kept += len(first[-1])
    feats, lg = volume_features.features(net, x)
    stats.update(feats)
    if observe is not None:
      observe(x, feats)
    if want_logits and lg is not None:
      logits.append(lg)
  return (stats, (np.concatenate(logits) if logits else None),
          (np.concatenate(first) if first else None))


def _cache_dir(config):
  if not config.cache_stats:
    return None
  return config.stats_cache or os.path.join(
      config.data_cache or cache.default_cache_dir(), "eval_stats")


def real_statistics(config, real, net):
  """Feature statistics of the real data, from the cache when it has them.

  Returns:
    (FeatureStats, cache info dict).
  """
  key = {"format": STATS_FORMAT, "manifest_sha256": real.manifest_sha256, "split": real.split,
         "feature": real.feature, "count": real.count,
         # The weights' sha256 identifies them; their path may change.
         "features": {k: v for k, v in net.protocol.to_dict().items() if k != "weights"},
         "max_features": config.max_features}
  digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
  cache_dir = _cache_dir(config)
  path = os.path.join(cache_dir, f"real-{digest}.npz") if cache_dir else None
  if path and os.path.isfile(path):
    stats, stored = metrics.FeatureStats.load(path)
    if stored.get("key") == key:
      logging.info("Real statistics from the cache: %s", path)
      return stats, {"path": path, "hit": True}
  logging.info("Computing features of %d real examples of %s (%s)", real.count, real.data_dir,
               real.split)
  stats, _, _ = _accumulate(net, real_batches(real, config.batch_size), config.max_features,
                            False)
  if path:
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}.npz"
    stats.save(tmp, metadata={"key": key, "data_dir": os.path.abspath(real.data_dir)})
    os.replace(tmp, path)
  return stats, {"path": path, "hit": False}


@dataclasses.dataclass
class Reference:
  """The real side of a comparison, computed once (`prepare`): the data, the
  feature network and the real statistics."""
  config: EvaluateConfig
  real: Real
  net: features_lib.FeatureNetwork
  stats: metrics.FeatureStats
  cache: dict

  def available_metrics(self):
    """The metric names `compare` reports against this reference."""
    names = ["fid", "kid", "precision", "recall"]
    if self.net.has_logits:
      names.append("inception_score")
    if self.real.is_vector and "centers" in self.real.manifest.get("builtin", {}):
      names += ["modes", "high_quality"]
    return names


def _feature_network(config, real):
  if real.is_vector:
    return features_lib.identity()
  return features_lib.get(config.features, config.inception_weights, config.feature_layer)


def prepare(config, real=None, net=None):
  """The feature network and the real statistics for `config` (`real` and
  `net` default to `resolve_real(config)` and the network config names).

  Raises:
    ValueError: bad data; features.FeatureNetworkError: a feature network
      that cannot be built.
  """
  real = real or resolve_real(config)
  net = net or _feature_network(config, real)
  stats, cache = real_statistics(config, real, net)
  return Reference(config, real, net, stats, cache)


def compare(reference, fake_info, fake_batches, observe=None):
  """Generated batches (in [-1, 1]) against `reference`; `observe(x, features)`
  also sees each quantized batch.

  Returns:
    {"metrics": {...}, "protocol": {...}, "cache": {...}}.
  """
  config, real, net, real_stats = (reference.config, reference.real, reference.net,
                                   reference.stats)
  logging.info("Computing features of the generated samples")
  fake_stats, logits, points = _accumulate(
      net, fake_batches, config.max_features, True, quantize=real.max_value,
      keep_first=MODE_COVERAGE_SAMPLES if real.is_vector else 0, observe=observe)
  if fake_stats.count < 2 or real_stats.count < 2:
    raise ValueError(f"need at least 2 samples per side, got {fake_stats.count} generated and "
                     f"{real_stats.count} real")
  fake_feats, real_feats = fake_stats.features, real_stats.features
  kid, kid_stderr = metrics.kid(real_feats, fake_feats, config.kid_subsets,
                                config.kid_subset_size, seed=config.seed)
  results = {"fid": metrics.fid(real_stats, fake_stats), "kid": kid, "kid_stderr": kid_stderr}
  if min(len(real_feats), len(fake_feats)) > PR_K:
    results["precision"], results["recall"] = metrics.precision_recall(real_feats, fake_feats,
                                                                       k=PR_K)
  if logits is not None:
    splits = min(10, len(logits))
    results["inception_score"], results["inception_score_std"] = metrics.inception_score(
        logits, splits)
  protocol = {
      "feature_network": net.protocol.to_dict(),
      "num_real": real_stats.count, "num_fake": fake_stats.count, "seed": config.seed,
      "real": {"spec": config.real, "data_dir": os.path.abspath(real.data_dir),
               "manifest_sha256": real.manifest_sha256, "split": real.split,
               "feature": real.feature, "order": "the first num_real records in shard order"},
      "fake": fake_info,
      "fake_quantization": None if real.is_vector else f"{int(real.max_value).bit_length()}-bit",
      "kid": {"kernel": "(x.y / d + 1)^3", "subsets": config.kid_subsets,
              "subset_size": min(config.kid_subset_size, len(real_feats), len(fake_feats)),
              "estimator": "unbiased MMD^2 (Binkowski et al. 2018)",
              "stderr": "std of the subset estimates / sqrt(subsets)"},
      "precision_recall": {"k": PR_K, "reference": "Kynkaanniemi et al. 2019"},
      "features_kept": {"real": len(real_feats), "fake": len(fake_feats),
                        "cap": config.max_features,
                        "note": "KID and precision/recall use these uniform random subsets; "
                                "FID uses every sample"},
      "inception_score": {"splits": min(10, len(logits))} if logits is not None else None,
  }
  if len(real.shape) == 4:  # Volumes [D, H, W, C]: images of their mid-planes.
    protocol["volumes"] = volume_features.PROTOCOL
  if real.is_vector and "builtin" in real.manifest:
    info = real.manifest["builtin"]
    if "centers" in info:
      stats = mode_coverage.mode_stats(points, info["centers"], info["std"])
      results.update(modes=stats["modes"], num_modes=len(info["centers"]),
                     high_quality=stats["high_quality"])
      protocol["mode_coverage"] = {
          "samples": len(points), "high_quality": "within 3 std of the nearest mode",
          "covered": "a mode with >= 20 high-quality samples", "per_mode": stats["per_mode"]}
  return {"metrics": results, "protocol": protocol, "cache": reference.cache}


def _check_named_inputs(config):
  """Raises ValueError naming the first input path of `config` that is missing."""
  if config.samples and not os.path.exists(config.samples):
    raise ValueError(f"--samples {config.samples!r} does not exist")
  if config.model_dir:
    run_dir.load_run(config.model_dir)
    run_dir.resolve_checkpoint(config.model_dir, config.checkpoint)
  if config.features != "inception" and not os.path.exists(config.features):
    raise ValueError(f"--features {config.features!r} is neither inception nor an existing "
                     "Keras model file or SavedModel")
  _, sep, _ = (config.real or "").partition(":")
  if config.real and not sep and not os.path.isdir(config.real):
    raise ValueError(f"--real {config.real!r} does not exist")


def run(config):
  """Evaluates generated samples against real data.

  Returns:
    {"metrics": {...}, "protocol": {...}, "cache": {...}, "seconds": float},
    with "memorization": {...} under `config.memorization`; also written to
    `config.output` when set. Paired fidelity: `paired.run`'s results.

  Raises:
    ValueError: bad config, data, samples or model directory.
    features.FeatureNetworkError: a feature network that cannot be built
      (e.g. no InceptionV3 weights offline; the message says how to get them).
  """
  config.validate()
  _check_named_inputs(config)  # Before anything slow (a conversion) or online (weights).
  start = time.time()
  if config.pairs:
    return paired.run(config)
  real = resolve_real(config)
  if config.model_dir and paired.translates_volumes(config.model_dir, real.manifest):
    return paired.run(config, real.data_dir, real.manifest)
  splits = (memorization_lib.split_names(real.manifest, real.split, config.real)
            if config.memorization else None)
  if splits and not config.trust_split:
    audit_split.check(config, real)
  net = _feature_network(config, real)  # A bad network fails before a model is loaded.
  fake_info, fake_batches, _ = _fake_source(config, real)
  audit = memorization_lib.audit_train(config, real, net, splits[0]) if splits else None
  out = compare(prepare(config, real, net), fake_info, fake_batches,
                observe=audit.add_samples if audit else None)
  if audit:
    out["memorization"] = memorization_lib.audit_report(config, real, net, audit, splits[1])
  out["seconds"] = round(time.time() - start, 1)
  if config.output:
    os.makedirs(os.path.dirname(os.path.abspath(config.output)), exist_ok=True)
    manifest_lib.write_json_atomic(config.output, out)
  return out
