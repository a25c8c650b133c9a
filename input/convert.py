"""Converting a source into sharded TFRecords: the library behind `pipeline.convert`.

    from input import convert
    convert.run(convert.ConvertConfig(source="folder:/data/xray", output="/data/xray-tfr"))

How a conversion proceeds:
1. The source lists its examples per split in a fixed order (sorted paths,
   then a seeded shuffle so that classes mix across shards).
2. The image spec is resolved: flags win; otherwise file headers are probed
   (one size must be common to all, the channels are 1 only if every image is
   gray).
3. Each split is cut into contiguous shards; the plan, with a fingerprint of
   everything that determines the output, goes to `OUTPUT/.convert/plan.json`.
4. This task's shards are written in parallel worker processes
   (`input/shards.py`), each to a temporary name, fsynced, then renamed; a
   sidecar `.convert/<shard>.json` records its sha256, counts and skipped
   inputs. A re-run keeps every shard whose sidecar matches the plan and whose
   file matches the recorded sha256.
5. Finalizing (automatic with one task, `--finalize` with several) checks that
   every planned shard is present and complete and merges the sidecars into
   `manifest.json`.

Output is deterministic: the same source and flags give byte-identical shards
whatever the number of workers or tasks.
"""

import collections
import dataclasses
import json
import os
import time

from absl import logging

from input import images
from input import manifest as manifest_lib
from input.medical import nifti
from input.medical import pseudonyms
from input.medical import splits
from input.medical import volume_records
from input.medical import window as window_lib
from input import plan as plan_lib
from input import shards
from input import sources
from input import workers
from settings import required, setting

_PLAN_NAME = "plan.json"

# The error and exit codes of `pipeline.convert` (planning raises them too).
ConvertError = plan_lib.ConvertError
EXIT_USAGE = plan_lib.EXIT_USAGE  # Bad flags or source; nothing was written.
EXIT_INCOMPLETE = plan_lib.EXIT_INCOMPLETE  # Too many skipped inputs, or missing shards.

@dataclasses.dataclass(frozen=True)
class ConvertConfig:
  """Everything that defines a conversion: each field but `command_line` is a
  flag of `pipeline.convert` (settings/: default and help written here only)."""
  output: str = required("Output directory for shards and manifest.json.")
  source: str | None = setting(  # None only with --finalize.
      None,
      f"What to convert: {sources.usage()}.")
  num_shards: int | None = setting(None,
      "Shards per split. Default: about --target_shard_mb per shard, never fewer than "
      "--min_shards (nor more than there are examples).")
  min_shards: int = setting(16,
      "Least number of shards per split, so that many workers can shard by file.")
  target_shard_mb: float = setting(150.0, "Target shard size in MB for --num_shards.")
  image_size: int | None = setting(None,
      "Output size NxN. Default: keep the source's size (all images must then share one size). "
      "For builtin: the size to draw at (32).")
  channels: int | None = setting(None,
      "Output channels. Default: the source's (1 if every image is gray).", choices=(1, 3))
  resize: str = setting("crop",
      "Fitting images of another aspect ratio: center-crop, pad with black to the target aspect, "
      "or stretch.", choices=images.RESIZE_MODES)
  bit_depth: int | None = setting(None,
      "Stored bit depth. Default: 16 for dicom: and nifti: sources (the window maps onto all "
      "65536 levels), else 8; 16 also keeps 16-bit PNGs exact.", choices=(8, 16))
  window: str = setting("auto",
      "dicom/nifti: intensity window in modality units: CENTER,WIDTH (e.g. 40,80), a preset "
      "(" + ", ".join(window_lib.PRESETS) + "), percentile:LOW,HIGH per volume (e.g. "
      "percentile:0.5,99.5), or auto (ct_full for CT, percentile:0.5,99.5 otherwise).")
  window_b: str | None = setting(None,
      "paired: and unpaired: dicom/nifti: the B side's window, in the same forms as --window "
      "(which then windows the A side only). Sides of different modalities need their own: "
      "MR -> CT from NIfTI (no modality tag) is --window=percentile:0.5,99.5 "
      "--window_b=ct_full. Default: --window for both sides.")
  slice_axis: str = setting("axial", "nifti: the axis volumes are sliced along.",
                            choices=tuple(nifti.AXES))
  volume_index: str = setting("0", "nifti: the volume of a 4-D file to take, or 'all'.")
  context_slices: int = setting(0,
      "paired:dicom: and paired:nifti: 2.5-D context: store the source (A) slice with its K "
      "neighbours on either side as 2K+1 channels, in slice order (the end slices of a volume "
      "repeated); the target (B) stays its one centre slice. pipeline.translate stacks them "
      "alike from the input volume.")
  volumes: bool = setting(False,
      "dicom:/nifti: (paired:, unpaired: too): store each series or volume whole, one 16-bit "
      "DxHxWx1 record windowed as slices are; D along --slice_axis (DICOM: the series' order).")
  volume_size: tuple = setting((),
      "--volumes: fit every volume to D,H,W (or N: NxNxN) by --resize, Lanczos in the plane "
      "then along D. Default: each volume's size (after --spacing), which all must share.",
      kind="int_list")
  spacing: float | None = setting(None,
      "--volumes: resample to isotropic voxels of this many mm before --volume_size; the "
      "manifest records the source's and the stored spacing.")
  patch_size: int | None = setting(None,
      "--volumes, paired: store --patches_per_volume paired NxNxN patches per pair, not the "
      "pair: the same place in A and B, centred in B's body mask, drawn from --seed and the id.")
  patches_per_volume: int | None = setting(None, "--patch_size: patches per pair (K).")
  min_foreground: float = setting(0.0,
      "Skip images (slices) whose fraction of pixels above the window's minimum (above 0) is "
      "below this, e.g. air-only slices; counted in the manifest, not errors.")
  holdout: float = setting(0.0,
      "Hold out this fraction of the --split_by groups as split 'test' (train* -> test*). The "
      "held-out groups depend only on who they are, this fraction and --seed.")
  split_by: str = setting("patient",
      "--holdout groups: patient (DICOM PatientID, else OtherPatientIDs, else PatientName with "
      "PatientBirthDate; the BIDS sub- entity; a folder for folder: images; see "
      "--patient_from), study (DICOM StudyInstanceUID, BIDS subject and session), series (a "
      "DICOM series, a NIfTI file, a folder) or file.", choices=splits.SPLIT_BY)
  patient_from: str | None = setting(None,
      "dicom/nifti: how patients are told apart when the headers or BIDS names do not say: a "
      "DICOM attribute keyword (e.g. OtherPatientIDs), folder:N (the N-th folder under the "
      "source root, 1 the first), or file (each NIfTI file one patient).")
  split_file: str | None = setting(None,
      "With --holdout: write the split (group pseudonyms and names only) to this file, or reuse "
      "it when it exists, so that other conversions (T1 and T2, another size) hold out the same "
      "patients. Its pseudonym key is kept beside it, private, as FILE.key.")
  max_image_pixels: int | None = setting(None,
      "Raise Pillow's decompression-bomb limit (pixels) for very large images (histology).")
  encoding: str = setting("raw",
      "raw: fastest to read; png: lossless and smaller on disk.", choices=images.ENCODINGS)
  labels: str = setting("auto",
      "folder: labels from first-level subfolder names (auto: when every image is in one).",
      choices=["auto", "subfolder", "none"])
  num_workers: int | None = setting(None,
      "Parallel writer processes. Default: as many as pay for their start-up (from the time "
      "of the second shard), at most the CPUs available.")
  overwrite: bool = setting(False, "Start over: rewrite every shard even if complete ones exist.")
  num_tasks: int = setting(1,
      "Split the conversion over this many tasks (Slurm array, Kubernetes Indexed Job); each "
      "writes a disjoint range of shards.")
  task_index: int = setting(0, "This task's index in [0, --num_tasks).")
  finalize: bool = setting(False, "After all tasks: check every shard and write manifest.json.")
  max_skip_fraction: float = setting(0.01,
      "Fail (exit 1) when more than this fraction of inputs was skipped.")
  max_examples: int | None = setting(None, "Convert at most this many examples per split.")
  seed: int = setting(0, "Seed of the shard order shuffle and of builtin data generation.")
  tfds_data_dir: str | None = setting(None, "tensorflow-datasets data_dir.")
  command_line: str = ""  # Filled in by the binary: recorded in the manifest.

  def validate(self):
    """Raises ConvertError naming the first bad value."""
    checks = [
        (self.output, "--output is required"),
        (self.finalize or self.source, "--source is required"),
        (self.num_shards is None or self.num_shards >= 1,
         f"--num_shards must be >= 1, got {self.num_shards}"),
        (self.min_shards >= 1, f"--min_shards must be >= 1, got {self.min_shards}"),
        (self.image_size is None or self.image_size >= 1,
         f"--image_size must be >= 1, got {self.image_size}"),
        (self.channels in (None, 1, 3), f"--channels must be 1 or 3, got {self.channels}"),
        (self.resize in images.RESIZE_MODES,
         f"--resize must be one of {', '.join(images.RESIZE_MODES)}, got {self.resize!r}"),
        (self.bit_depth in (None, 8, 16), f"--bit_depth must be 8 or 16, got {self.bit_depth}"),
        (0.0 <= self.min_foreground < 1.0,
         f"--min_foreground must be in [0, 1), got {self.min_foreground}"),
        (0.0 <= self.holdout < 1.0, f"--holdout must be in [0, 1), got {self.holdout}"),
        (not self.split_file or self.holdout or os.path.exists(self.split_file),
         f"--split_file {self.split_file!r} does not exist; give --holdout=FRACTION to make it"),
        (self.split_by in splits.SPLIT_BY,
         f"--split_by must be one of {', '.join(splits.SPLIT_BY)}, got {self.split_by!r}"),
        (self.max_image_pixels is None or self.max_image_pixels > 0,
         f"--max_image_pixels must be > 0, got {self.max_image_pixels}"),
        (self.encoding in images.ENCODINGS,
         f"--encoding must be one of {', '.join(images.ENCODINGS)}, got {self.encoding!r}"),
        (self.labels in ("auto", "subfolder", "none"),
         f"--labels must be auto, subfolder or none, got {self.labels!r}"),
        (self.num_workers is None or self.num_workers >= 1,
         f"--num_workers must be >= 1, got {self.num_workers}"),
        (self.num_tasks >= 1, f"--num_tasks must be >= 1, got {self.num_tasks}"),
        (0 <= self.task_index < self.num_tasks,
         f"--task_index must be in [0, {self.num_tasks}), got {self.task_index}"),
        (0.0 <= self.max_skip_fraction <= 1.0,
         f"--max_skip_fraction must be in [0, 1], got {self.max_skip_fraction}"),
        (self.max_examples is None or self.max_examples >= 1,
         f"--max_examples must be >= 1, got {self.max_examples}"),
        (self.context_slices >= 0, f"--context_slices must be >= 0, got {self.context_slices}"),
        # PNG holds 1 to 4 channels.
        (self.encoding != "png" or 2 * self.context_slices + 1 <= 4,
         f"--context_slices={self.context_slices} stores {2 * self.context_slices + 1} channels, "
         "more than PNG holds (4); use --encoding=raw"),
        *volume_records.config_checks(self),
    ]
    for ok, message in checks:
      if not ok:
        raise ConvertError(message)


# ---------------------------------------------------------------------------
# The output directory.


def _is_ours(name):
  return (manifest_lib.is_shard_name(name)
          or name in (manifest_lib.MANIFEST_NAME, shards.STATE_DIR)
          or (name.startswith(".") and ".tmp-" in name))


def _check_output(config):
  out = os.path.realpath(config.output)
  for d in sources.source_dirs(config.source):
    d = os.path.realpath(d)
    if out == d or out.startswith(d + os.sep):
      raise ConvertError(f"--output {config.output!r} is inside the source folder {d!r}; "
                         "choose a directory outside it")
  if os.path.exists(out) and not os.path.isdir(out):
    raise ConvertError(f"--output {config.output!r} exists and is not a directory")
  if os.path.isdir(out):
    foreign = sorted(n for n in os.listdir(out) if not _is_ours(n))
    if foreign:
      raise ConvertError(f"--output {config.output!r} holds files that are not from a "
                         f"conversion (e.g. {foreign[0]!r}); choose an empty or new directory")


def _read_plan(out_dir):
  path = os.path.join(out_dir, shards.STATE_DIR, _PLAN_NAME)
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _prepare_output(config, plan):
  out = config.output
  old = _read_plan(out)
  if old is not None and old["fingerprint"] != plan.fingerprint and not config.overwrite:
    raise ConvertError(f"--output {out!r} holds a different conversion (of "
                       f"{old.get('source')!r} with other settings); pass --overwrite to "
                       "replace it, or choose another directory")
  os.makedirs(os.path.join(out, shards.STATE_DIR), exist_ok=True)
  if config.overwrite:
    mine = {j.file for j in plan.jobs_for_task(config.task_index, config.num_tasks)}
    for name in os.listdir(out):
      # With several tasks, each removes only its own shards: others may be running.
      if config.num_tasks == 1 or name in mine:
        if manifest_lib.is_shard_name(name):
          os.remove(os.path.join(out, name))
          shards.remove_if_exists(shards.sidecar_path(out, name))
    if config.num_tasks == 1:
      shards.remove_if_exists(os.path.join(out, manifest_lib.MANIFEST_NAME))
      for name in os.listdir(os.path.join(out, shards.STATE_DIR)):
        if name != pseudonyms.SALT_NAME:  # Pseudonyms stay the same.
          shards.remove_if_exists(os.path.join(out, shards.STATE_DIR, name))
  manifest_lib.write_json_atomic(os.path.join(out, shards.STATE_DIR, _PLAN_NAME),
                                 plan.to_json())


# ---------------------------------------------------------------------------
# The pseudonym salt.

KEY_SUFFIX = ".key"


class _Created:
  """What a conversion made before it knew it could succeed: removed again
  when it fails, so that a failed run leaves nothing behind (no salt)."""

  def __init__(self, output):
    self.paths = []
    for d in (os.path.join(output, shards.STATE_DIR), output):
      if not os.path.exists(d):
        self.paths.append(d)

  def claim_salt(self, path, salt):
    """`pseudonyms.claim_salt`, remembering a file this run wrote."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(parent):
      self.paths.insert(0, parent)
    salt, wrote = pseudonyms.claim_salt(path, salt)
    if wrote:
      self.paths.insert(0, path)
    return salt

  def undo(self):
    for path in self.paths:  # Files first, then their (then empty) folders.
      try:
        if os.path.isdir(path):
          os.rmdir(path)
        else:
          os.remove(path)
      except OSError:
        pass  # A folder something else wrote to stays.


def _pseudonym_salt(config, created):
  """The salt of the pseudonyms of a medical conversion.

  It is kept in OUTPUT/.convert (mode 0600; never in the manifest or a
  shard). With --split_file, the split's key (FILE.key beside it, private)
  is the salt, so that conversions sharing a split name patients alike.

  Raises:
    ConvertError: a split file without its key, or an output converted
      under another key (without --overwrite).
  """
  out_path = os.path.join(config.output, shards.STATE_DIR, pseudonyms.SALT_NAME)
  have = pseudonyms.read_salt(out_path)
  if not config.split_file:
    return have or created.claim_salt(out_path, pseudonyms.new_salt())
  key_path = config.split_file + KEY_SUFFIX
  key = pseudonyms.read_salt(key_path)
  if key is None:
    if os.path.exists(config.split_file):
      raise ConvertError(f"--split_file {config.split_file!r} has no key beside it ({key_path!r}"
                         "), so the pseudonyms it lists cannot be matched; copy the key from "
                         "where the split was made")
    key = created.claim_salt(key_path, have or pseudonyms.new_salt())
  if have is None:
    return created.claim_salt(out_path, key)
  if have != key:
    if not config.overwrite:
      raise ConvertError(f"--output {config.output!r} was converted under another pseudonym key "
                         f"than --split_file {config.split_file!r}'s; pass --overwrite to "
                         "convert it again under the split's key")
    os.remove(out_path)
    created.claim_salt(out_path, key)
  return key


# ---------------------------------------------------------------------------
# Entry points.


def run(config):
  """Converts `config.source` into sharded TFRecords under `config.output`.

  Returns:
    The manifest (a dict) when this call finished the conversion, or None for
    one task of several (run again with `finalize=True` when all are done).

  Raises:
    ConvertError: bad flags or source (exit_code 2, nothing written), or an
      incomplete result (exit_code 1: too many skipped inputs, missing shards).
  """
  config.validate()
  if config.finalize:
    return finalize(config.output, config.max_skip_fraction)
  images.set_max_image_pixels(config.max_image_pixels)
  created = _Created(config.output)
  try:
    _check_output(config)  # Before the salt is made in it.
    source = sources.build(config.source, config,
                           pseudonym_salt=lambda: _pseudonym_salt(config, created))
    reuse = splits.read_split_file(config.split_file) if (
        config.split_file and os.path.exists(config.split_file)) else None
    if reuse is not None and config.holdout and config.holdout != reuse["fraction"]:
      raise ConvertError(f"--holdout={config.holdout:g}, but --split_file {config.split_file!r} "
                         f"was made with {reuse['fraction']:g}; leave --holdout out to reuse it")
    plan = plan_lib.Plan(source, config, reuse)
  except (sources.SourceError, splits.SplitError, ConvertError) as e:
    created.undo()  # A run that fails writes nothing.
    raise ConvertError(str(e)) from None
  except BaseException:
    created.undo()
    raise
  if config.split_file and reuse is None and config.task_index == 0:
    splits.write_split_file(config.split_file, plan.holdout, plan.split_groups)
    logging.info("Wrote the split to %s (fingerprint %s)", config.split_file,
                 plan.holdout["fingerprint"][:12])
  _prepare_output(config, plan)
  out = config.output
  mine = plan.jobs_for_task(config.task_index, config.num_tasks)
  shards.remove_stale_tmp(out, [j.file for j in mine])
  todo = [j for j in mine if not (not config.overwrite and
                                  shards.shard_complete(out, j.file, j.fingerprint))]
  spec_text = f"{plan.spec.describe()} {config.encoding}" if plan.spec else "vectors"
  if plan.stacks:
    spec_text += ", " + ", ".join(f"{name} a stack of {n} slices"
                                  for name, n in sorted(plan.stacks.items()))
  logging.info("Converting %s -> %s: kind %s, %s, %d inputs, %d shards in all; task %d/%d "
               "writes %d shards (%d already complete)", config.source, out, plan.kind,
               spec_text, plan.num_inputs, len(plan.jobs), config.task_index, config.num_tasks,
               len(todo), len(mine) - len(todo))
  start = time.time()
  done = [0, 0]

  for skip in plan.pre_skipped:
    logging.warning("Skipped %s: %s", skip.key, skip.reason)

  def log_progress(record):
    for skip in record["skipped"]:  # One line each; the manifest lists them all.
      logging.warning("Skipped %s: %s", skip["key"], skip["reason"])
    done[0] += 1
    done[1] += record["num_records"]
    rate = done[1] / max(time.time() - start, 1e-9)
    logging.info("[%d/%d] %s: %d records, %d skipped (%.0f examples/s)", done[0], len(todo),
                 record["file"], record["num_records"], len(record["skipped"]), rate)

  if source.streaming:
    shards.write_streaming(source, plan, todo, out, log_progress)
  else:
    args = (plan.kind, plan.spec, config.encoding, plan.label_names, out, config.min_foreground,
            plan.stacks)
    workers.write_shards(source, todo, args, config.num_workers, config.max_image_pixels,
                         log_progress)
  if config.num_tasks > 1:
    logging.info("Task %d of %d done. When every task is done, run the same command with "
                 "--finalize.", config.task_index, config.num_tasks)
    return None
  return finalize(out, config.max_skip_fraction)


def finalize(out_dir, max_skip_fraction=0.01):
  """Checks that every planned shard is complete and writes `manifest.json`.

  Raises:
    ConvertError: no plan (exit 2), missing or incomplete shards (exit 1,
      listing them), or more skipped inputs than `max_skip_fraction` (exit 1,
      after the manifest is written so the skipped files can be inspected).
  """
  plan = _read_plan(out_dir)
  if plan is None:
    raise ConvertError(f"{out_dir!r} holds no conversion plan; run the conversion tasks first")
  missing, records, owners = [], [], set()
  num_tasks = plan["config"]["num_tasks"]
  for i, shard in enumerate(plan["shards"]):
    # The sha256 was taken when the shard was committed; here size is enough.
    if not shards.shard_complete(out_dir, shard["file"], shard["fingerprint"], verify_sha=False):
      missing.append(shard["file"])
      owners.add(next(t for t in range(num_tasks)
                      if i < (t + 1) * len(plan["shards"]) // num_tasks))
      continue
    with open(shards.sidecar_path(out_dir, shard["file"]), encoding="utf-8") as f:
      records.append(json.load(f))
  if missing:
    raise ConvertError(f"{len(missing)} of {len(plan['shards'])} shards are missing or "
                       f"incomplete (first: {', '.join(missing[:5])}); re-run tasks "
                       f"{sorted(owners)} of {num_tasks}, then finalize again", EXIT_INCOMPLETE)
  planned = {s["file"] for s in plan["shards"]}
  for name in os.listdir(out_dir):
    if manifest_lib.is_shard_name(name) and name not in planned:
      logging.warning("Removing stale shard %s from an earlier conversion", name)
      os.remove(os.path.join(out_dir, name))
      shards.remove_if_exists(shards.sidecar_path(out_dir, name))
  split_table = {}
  skipped = list(plan["pre_skipped"])
  below_foreground = 0
  windows, corners = {}, {}
  for r in records:
    s = split_table.setdefault(r["split"], {"num_examples": 0, "shards": [],
                                            "label_counts": collections.Counter()})
    s["num_examples"] += r["num_records"]
    s["label_counts"].update(r["label_counts"])
    s["shards"].append({k: r[k] for k in ("file", "num_records", "sha256", "bytes")})
    skipped.extend(r["skipped"])
    below_foreground += r.get("below_min_foreground", 0)
    windows.update(r.get("windows", {}))
    corners.update(r.get("patch_corners", {}))
  for s in split_table.values():
    s["label_counts"] = dict(sorted(s["label_counts"].items()))
  extra = dict(plan["extra"])
  if "series" in extra:  # Volumes: each with the window of its slices.
    extra.update(window_lib.manifest_fields(extra["series"], windows))
  manifest = {
      "format_version": manifest_lib.FORMAT_VERSION,
      "kind": plan["kind"],
      "features": plan["features"],
      "label_names": plan["label_names"],
      "splits": split_table,
      "num_inputs": plan["num_inputs"],
      "skipped": skipped,
      "below_min_foreground": below_foreground,
      "source": plan["source"],
      "command_line": plan["command_line"],
      "config": plan["config"],
      "fingerprint": plan["fingerprint"],
      **extra,
  }
  if plan.get("holdout"):
    manifest["holdout"] = plan["holdout"]
  if corners:  # Paired 3-D patches: where each was cut (`volume_records`).
    manifest["patch_corners"] = dict(sorted(corners.items()))
  manifest_lib.write_json_atomic(os.path.join(out_dir, manifest_lib.MANIFEST_NAME), manifest)
  total = sum(s["num_examples"] for s in split_table.values())
  logging.info("Wrote %s: %d examples in %d shards, %d inputs skipped",
               os.path.join(out_dir, manifest_lib.MANIFEST_NAME), total, len(records),
               len(skipped))
  fraction = len(skipped) / max(1, plan["num_inputs"])
  if fraction > max_skip_fraction:
    raise ConvertError(f"{len(skipped)} of {plan['num_inputs']} inputs ({fraction:.1%}) were "
                       f"skipped, more than --max_skip_fraction={max_skip_fraction:g}; see "
                       f"'skipped' in {os.path.join(out_dir, manifest_lib.MANIFEST_NAME)}",
                       EXIT_INCOMPLETE)
  return manifest
