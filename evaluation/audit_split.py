"""Whether a memorization audit can be trusted: `--real`'s held-out images
must share no patient with the images the model was trained on
(`pipeline.evaluate --memorization`, checked before anything slow)."""

from absl import logging

from input import cache
from input import manifest as manifest_lib
from training import run_dir


def _trained_on(model_dir):
  """(what the run trained on, its data's holdout record or None, its data's
  manifest fingerprint or None).

  The run directory records the holdout (`DataInfo.holdout`); runs written
  before it did are read from their data's manifest, when it can be found.
  """
  run_config, data = run_dir.load_run(model_dir)
  if data.holdout is not None:
    return run_config.data, data.holdout, None
  try:
    data_dir = cache.resolve(run_config.data, cache_dir=run_config.data_cache,
                             image_size=run_config.image_size)
    manifest = manifest_lib.load(data_dir)
  except (ValueError, OSError) as e:
    logging.warning("Memorization: the run's training data %r cannot be read: %s",
                    run_config.data, e)
    return run_config.data, None, None
  return run_config.data, manifest.get("holdout"), manifest.get("fingerprint")


def check(config, real):
  """Refuses an audit whose answer could mislead (`--trust_split` skips this).

  The held-out images are the audit's measure of chance, so they must share
  no patient with the images the model was trained on: `--real`'s test split
  must have been made by patient (`pipeline.convert --split_by=patient`), and
  the model's training data must have been split the same way (the same
  split fingerprint). A source's own test split (builtin:, tfds:) has no
  patients; it must then be the very data the model was trained on.

  Raises:
    ValueError: one line that says what is wrong and the way out.
  """
  way_out = "; pass --trust_split if you know better"
  holdout = real.manifest.get("holdout")
  if holdout is not None and holdout.get("split_by") != "patient":
    raise ValueError(
        f"--memorization needs held-out patients, but {config.real!r} held out by "
        f"--split_by={holdout.get('split_by')}: a held-out image can share a patient with the "
        "training images and make copies look like chance; convert it again with "
        f"--split_by=patient{way_out}")
  if holdout is None and (real.manifest.get("medical") or config.samples):
    raise ValueError(f"--memorization: {config.real!r} has a test split that pipeline.convert "
                     "--holdout did not make, so it cannot say that the test patients are not "
                     f"training patients{way_out}")
  if config.samples:
    raise ValueError("--memorization with --samples cannot tell which data the samples' model "
                     "was trained on, so whether the held-out patients were in it; give "
                     f"--model_dir instead{way_out}")
  data, trained_holdout, trained_fingerprint = _trained_on(config.model_dir)
  if holdout is None:
    if trained_fingerprint != real.manifest.get("fingerprint"):
      raise ValueError(f"--memorization: {config.model_dir!r} was trained on {data!r}, not on "
                       f"{config.real!r}, whose test split is the source's own{way_out}")
    return
  mine = (trained_holdout or {}).get("fingerprint")
  if mine != holdout.get("fingerprint"):
    what = ("was trained on data without a held-out split" if not trained_holdout else
            "was trained on data split another way (another split fingerprint)")
    raise ValueError(f"--memorization: {config.model_dir!r} {what} ({data!r}), so the held-out "
                     f"patients of {config.real!r} may have been training patients; convert both "
                     f"with one --split_file{way_out}")
  logging.info("Memorization: %r holds out patients (split %s), the split %r was trained "
               "against", config.real, holdout["fingerprint"][:12], config.model_dir)
