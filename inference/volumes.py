"""Medical images out: the data's intensity windows as a run knows them
(`DataInfo.window`), samples written as 16-bit PNG or NIfTI, and NIfTI
volumes and DICOM series translated slice by slice (`pipeline.sample
--format`, `pipeline.translate`).

The model works in [-1, 1]. A window [low, high] in modality units (see
`input.medical.window`) maps that range back:

    code     = round((x + 1) / 2 * 65535)            # 16-bit PNG
    modality = low + (x + 1) / 2 * (high - low)      # NIfTI

and maps an input slice in the way the conversion windowed the training
data: values -> the window's 16-bit codes -> codes / 65535 * 2 - 1.

Privacy: of a DICOM file only its pixel values, modality and image plane
(orientation, position, pixel spacing) are used; series are named by salted
pseudonyms (`series-<pseudonym>`, the salt kept in the run directory, never
in the output), and nothing is written as DICOM.
"""

import json
import os

from absl import logging
import numpy as np
import tensorflow as tf

from input import images
from input import manifest as manifest_lib
from input.medical import dicom
from input.medical import geometry
from input.medical import identity
from input.medical import nifti
from input.medical import pseudonyms
from input.medical import volume as medical_volume
from input.medical import window as window_lib
from training import data as data_lib

WINDOW_NAME = "window.json"
STACK_NAME = "samples.nii.gz"
MAX_CODE = 65535
SAMPLE_FORMATS = ("png", "png16", "nifti")  # png: today's 8-bit folder.
VOLUME_FORMATS = ("nifti", "png16")


# --- Windows of a run's data ---


def domain_window(data, domain):
  """The `Window` of one domain ("image", "A" or "B") of a run's data, or
  None when the data has none (not converted from dicom: or nifti:)."""
  w = (data.window or {}).get(domain)
  return None if w is None else window_lib.Window.from_json(w)


def generated_domain(data):
  """The domain a sampling run generates: "image", or "B" for two-domain data."""
  return "image" if data.kind in ("image", "vector") else "B"


def is_volume_run(data):
  """Whether a run's data are volumes [D, H, W, C] (--volumes), not slices:
  `DataInfo.volumes`, or examples of rank 4 (run directories before it)."""
  return bool(getattr(data, "volumes", False)) or len(data.shape) == 4


def domain_spec(medical, domain):
  """The --window text the conversion windowed `domain` ("A", "B" or "image")
  with: the B side's own (`--window_b`) where it had one."""
  if domain == "B" and medical.get("window_b"):
    return medical["window_b"]
  return medical.get("window", "auto")


def source_window(spec, manifest_window, values):
  """The window that maps an input volume into the model's range, as the
  conversion windowed the training data.

  Args:
    spec: the `WindowSpec` of the conversion's --window (the run's
      `medical["window"]`).
    manifest_window: the source domain's `Window` in the manifest.
    values: the input volume's modality values.

  Returns:
    A fixed window (a CENTER,WIDTH or preset spec, or `auto` of CT data,
    whose window is in HU: ct_full): the manifest's. A percentile window
    (`auto` of other data included): the same percentiles of `values`.
  """
  if spec.kind == "fixed" or (spec.kind == "auto" and manifest_window.units == "HU"):
    return manifest_window
  return window_lib.resolve(spec, values, "CT" if manifest_window.units == "HU" else "")


def to_model(values, window):
  """Modality values -> the model's [-1, 1], through the window's 16-bit codes
  (as the conversion and the input pipeline did), float32."""
  return window.to_codes(values, 16).astype(np.float32) / MAX_CODE * 2.0 - 1.0


def to_codes16(x):
  """[-1, 1] -> uint16 codes 0..65535 (clipping): the 16-bit codes of the
  data's window."""
  x = np.clip(np.asarray(x, np.float64), -1.0, 1.0)
  return np.round((x + 1.0) / 2.0 * MAX_CODE).astype(np.uint16)


def window_entry(data, domain):
  """The manifest's window of `domain` for window.json (with `approximate`
  and, for percentile windows, how it was summarized), or None."""
  entry = (data.window or {}).get(domain)
  return None if entry is None else dict(entry)


def require(module, what):
  """Imports `module` of the `[medical]` extra, or raises a one-line
  ValueError (the binaries' errors) saying what needs it."""
  try:
    medical_volume.require(module, what)
  except medical_volume.MissingExtraError:
    raise ValueError(f"{what} need {module}, which is not installed; install the medical "
                     f"extra: {medical_volume.EXTRA_HINT}") from None


def write_window_json(folder, record):
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, WINDOW_NAME), "w", encoding="utf-8") as f:
    json.dump(record, f, indent=2, sort_keys=True)
    f.write("\n")


def write_png16(path, codes):
  """Writes uint16 [H, W] or [H, W, C] (C 1 or 3) as a 16-bit PNG."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  if codes.ndim == 2:
    codes = codes[..., None]
  with open(path, "wb") as f:
    f.write(images.encode(np.ascontiguousarray(codes, np.uint16), "png"))


# --- Samples (pipeline.sample --format) ---


def check_sample_format(fmt, data):
  """Refuses, before sampling, a --format this run's data cannot take.

  Raises:
    ValueError: one line: vectors, 3-channel data as NIfTI, or NIfTI
      without a window.
  """
  if fmt not in ("png16", "nifti"):
    return
  if len(data.shape) != 3:
    raise ValueError(f"--format={fmt} writes images; this run's data are {data.shape[0]}-D "
                     "vectors (use --output=*.npz or *.png)")
  if fmt == "nifti" and data.shape[-1] != 1:
    raise ValueError(f"--format=nifti writes 1-channel samples; this run's data has "
                     f"{data.shape[-1]} channels (use --format=png16)")
  if fmt == "nifti" and domain_window(data, generated_domain(data)) is None:
    raise ValueError("--format=nifti needs the data's window to map samples to modality "
                     "units, and this run's data has none (not converted from dicom: or "
                     "nifti:); use --format=png16")
  if fmt == "nifti":
    require("nibabel", "NIfTI samples")


def sample_spacing(data, data_spec=None):
  """The in-plane pixel spacing of generated slices, logged in one line.

  Args:
    data: the run's `DataInfo`; its `pixel_spacing` of the generated domain
      (the training slices' spacing after resizing) when recorded.
    data_spec: the run's --data. For run directories written before the
      spacing was recorded: a converted directory whose manifest gives it.

  Returns:
    (row spacing, column spacing) in mm; (1.0, 1.0) when no spacing is known.
  """
  domain = generated_domain(data)
  spacing, origin = data.pixel_spacing, "recorded by pipeline.train"
  if spacing is None and data_spec and os.path.isfile(
      os.path.join(data_spec, manifest_lib.MANIFEST_NAME)):
    spacing = data_lib.pixel_spacing(manifest_lib.load(data_spec))
    origin = f"from the manifest of {data_spec}"
  if not spacing or domain not in spacing:
    logging.info("NIfTI samples: 1 x 1 mm pixels; the training slices' pixel spacing is not "
                 "known (neither the run directory nor its data's manifest has one)")
    return 1.0, 1.0
  row, col = spacing[domain]
  logging.info("NIfTI samples: %.4g x %.4g mm pixels (rows x columns), the training slices' "
               "in-plane spacing after resizing (%s)", row, col, origin)
  return row, col


def write_samples(folder, x, fmt, data, data_spec=None):
  """Writes samples [N, H, W, C] in [-1, 1] into `folder` with window.json.

  png16: `NNNNN.png`, 16-bit grayscale or RGB, codes `to_codes16(x)`.
  nifti: one axial stack `samples.nii.gz` [W, H, N] of 1-channel samples in
  modality units (`Window.from_model`) whose pixels have the training slices'
  in-plane spacing (`sample_spacing`, 1 mm when unknown). Its third axis
  indexes the samples: the header claims no patient space and says so
  (`nifti.write_stack(samples=True)`).

  Args:
    data_spec: the run's --data, for `sample_spacing`.

  Returns:
    The paths written (window.json not counted).
  """
  check_sample_format(fmt, data)
  domain = generated_domain(data)
  window = domain_window(data, domain)
  os.makedirs(folder, exist_ok=True)
  written = []
  if fmt == "png16":
    codes = to_codes16(x)
    for i, img in enumerate(codes):
      written.append(os.path.join(folder, f"{i:05d}.png"))
      write_png16(written[-1], img)
    mapping = ("modality = low + code / 65535 * (high - low)" if window else
               "code = round((x + 1) / 2 * 65535) of the model's x in [-1, 1]")
  else:
    written.append(os.path.join(folder, STACK_NAME))
    row, col = sample_spacing(data, data_spec)
    nifti.write_stack(window.from_model(x[..., 0]), written[-1], zooms=(col, row, 1.0),
                      samples=True)
    mapping = "voxels in modality units: low + (x + 1) / 2 * (high - low)"
  record = {"format": fmt, "domain": domain, "window": window_entry(data, domain),
            "medical": data.medical, "mapping": mapping}
  if window is None:
    record["note"] = ("the run's data has no window (it was not converted from dicom: or "
                      "nifti:): the codes are the model's [-1, 1] mapped onto 0..65535")
  write_window_json(folder, record)
  return written


# --- Translation of volumes (pipeline.translate) ---


def _is_dicom_file(path):
  if path.lower().endswith((".dcm", ".dicom", ".ima")):
    return True
  try:
    with open(path, "rb") as f:
      return f.read(132)[128:] == b"DICM"
  except OSError:
    return False


def input_format(path, medical_format=None):
  """What `--input` holds: "nifti", "dicom" or "images".

  NIfTI: a .nii/.nii.gz file, or a folder with such files. DICOM: a folder
  with a file named *.dcm/.dicom/.ima or with the DICM preamble, or only
  non-image files when the run was trained on DICOM (`medical_format`).
  Otherwise a folder of images.

  Raises:
    ValueError: a missing path, or a file that is not NIfTI.
  """
  if os.path.isfile(path):
    if nifti.is_nifti(path):
      return "nifti"
    raise ValueError(f"--input {path!r} is a file but not NIfTI (.nii, .nii.gz); give a "
                     "NIfTI file, or a folder of images, NIfTI or DICOM files")
  if not os.path.isdir(path):
    raise ValueError(f"--input {path!r} does not exist")
  files = medical_volume.walk_files(path)
  if any(nifti.is_nifti(f) for f in files):
    return "nifti"
  others = [f for f in files if not f.lower().endswith(images.IMAGE_EXTENSIONS)]
  if any(_is_dicom_file(os.path.join(path, f)) for f in others):
    return "dicom"
  if medical_format == "dicom" and others and len(others) == len(files):
    return "dicom"
  return "images"


class VolumeTranslator:
  """Translates stacks of slices in modality units with one direction of a
  translation model.

  Args:
    fn: [B, H, W, C] in [-1, 1] -> the same, for any H and W that are
      multiples of `stride` (the networks are fully convolutional).
    data: the run's `DataInfo` (with its window, medical settings and the
      conversion's --resize).
    direction: "AtoB" or "BtoA", the direction `fn` translates.
    channels: the channels the model takes (1-channel slices are repeated to
      3 and the output averaged back). A run whose data was converted with
      --context_slices=K (`DataInfo.context_slices`) takes each slice with
      its K neighbours on either side, 2K + 1 channels.
    stride: the networks' stride; slices are padded to a multiple of it.
    batch_size: slices per call of `fn`.

  Raises:
    ValueError: the run's data has no window for one of the two domains.
  """

  def __init__(self, fn, data, direction, channels, stride=1, batch_size=8):
    self.fn, self.channels, self.batch_size = fn, channels, batch_size
    self.context_slices = data.context_slices
    self.stride = stride
    self.source_domain, self.target_domain = direction[0], direction[-1]
    self.size = tuple(data.shape[:2])
    # Runs written before --resize was recorded: the conversion's default.
    self.resize = data.resize or "crop"
    medical = data.medical or {}
    self.axis = medical.get("slice_axis", "axial")
    self.spec = window_lib.parse(domain_spec(medical, self.source_domain))
    self.source = domain_window(data, self.source_domain)
    self.target = domain_window(data, self.target_domain)
    if self.source is None or self.target is None:
      missing = self.source_domain if self.source is None else self.target_domain
      raise ValueError(f"--input holds NIfTI or DICOM volumes, but this run's data has no "
                       f"window for domain {missing} (it was not converted from dicom: or "
                       "nifti:), so modality values cannot be mapped to and from the model's "
                       "range")
    self.target_record = window_entry(data, self.target_domain)
    if self.target_record.get("approximate"):
      logging.warning("Domain %s's window is approximate (%s); the translated values are "
                      "in its units", self.target_domain,
                      self.target_record.get("note", "per-volume windows"))
    self.inputs = {}  # Output name -> the source window used.

  def window_for(self, values):
    return source_window(self.spec, self.source, values)

  def model_shape(self, rows, cols):
    """The size a rows x cols slice is translated at: the scale at which the
    conversion gave the model its slices (`images.scaled_shape`)."""
    return images.scaled_shape(rows, cols, *self.size, self.resize)

  def translate(self, values, window, spacing=None):
    """[S, rows, cols] modality values -> [S, rows, cols] float32 in [-1, 1].

    `spacing` (the volume's (D, H, W) mm) is read by `PatchTranslator`; a
    slice is scaled by its size alone (`model_shape`).

    Each slice is windowed, stacked with its context when the run has one
    (`medical_volume.context_stacks`: slices s - K .. s + K, the end slices
    repeated, as the conversion stacked them), then resized by
    `images.resize` (Lanczos, the conversion's filter; each slice of a stack
    alike) to `model_shape`: the conversion's scale, so that
    the model sees anatomy as it was trained on it. A slice that the
    conversion cropped or padded is translated whole (padded to the stride
    by reflection and cropped back), so that nothing of it is lost or
    stretched. The translation is resized back with the same filter onto
    the slice's own grid: voxel (r, c) of the output lies where voxel (r, c)
    of the input does.
    """
    del spacing
    x = medical_volume.context_stacks(to_model(values, window), self.context_slices)
    rows, cols = x.shape[1:3]
    height, width = self.model_shape(rows, cols)
    x = np.stack([images.resize(s, height, width) for s in x])
    if x.shape[-1] == 1 and self.channels == 3:
      x = np.repeat(x, 3, axis=-1)
    x = pad_to_stride(x, self.stride)
    out = []
    for start in range(0, len(x), self.batch_size):
      yb = self.fn(tf.constant(x[start:start + self.batch_size]))
      out.append(np.asarray(yb)[:, :height, :width].mean(axis=-1, keepdims=True))
    y = np.concatenate(out).astype(np.float32)
    return np.stack([images.resize(s, rows, cols)[..., 0] for s in y])

  def record(self, direction):
    """window.json of a translation: the target window and each output's
    source window."""
    return {"direction": direction, "source_domain": self.source_domain,
            "target_domain": self.target_domain, "window_spec": self.spec.describe(),
            "target": self.target_record, "inputs": dict(sorted(self.inputs.items())),
            "mapping": "NIfTI: modality units of the target window; PNG: 16-bit codes of it "
                       "(modality = low + code / 65535 * (high - low))"}


def pad_to_stride(x, stride):
  """Pads [..., H, W, C] on the bottom and right to multiples of `stride`, by
  reflection (by the edge where an image is too small to reflect)."""
  h, w = x.shape[-3:-1]
  ph, pw = -h % stride, -w % stride
  if not ph and not pw:
    return x
  mode = "reflect" if ph < h and pw < w else "edge"
  pad = [(0, 0)] * (x.ndim - 3) + [(0, ph), (0, pw), (0, 0)]
  return np.pad(x, pad, mode=mode)


def _write_png16_stack(folder, y):
  """y [T, S, rows, cols] in [-1, 1] -> folder/NNNN.png (tTTT/NNNN.png when T > 1)."""
  written = []
  for t, volume in enumerate(y):
    for k, img in enumerate(volume):
      name = f"{k:04d}.png" if len(y) == 1 else os.path.join(f"t{t:03d}", f"{k:04d}.png")
      written.append(os.path.join(folder, name))
      write_png16(written[-1], to_codes16(img))
  return written


def translate_nifti(translator, path, output, fmt, suffix=None):
  """Translates the NIfTI files that `path` names into `output`.

  Each 3-D volume (each of a 4-D file) is translated slice by slice along the
  run's slice axis, with its own source window (`source_window`). nifti: the
  same relative name, its BIDS suffix replaced by `suffix` when given
  (`identity.with_bids_suffix`), the input's shape, affine and header
  (float32 data in the target window's units); png16: `<that name without
  extension>/NNNN.png`.

  Returns:
    (written paths, [(input path, reason)] skipped).
  """
  require("nibabel", "NIfTI inputs")
  root, rels = nifti.list_files(path)
  written, skipped = [], []
  for rel in rels:
    full, out_rel = os.path.join(root, rel), identity.with_bids_suffix(rel, suffix)
    try:
      slices, img = nifti.read_slices(full, translator.axis)
    except Exception as e:  # pylint: disable=broad-except  # nibabel raises many kinds.
      logging.warning("Skipped %s: %s", full, images.first_line(e))
      skipped.append((full, f"unreadable NIfTI: {images.first_line(e)}"))
      continue
    windows = [translator.window_for(volume) for volume in slices]
    spacing = nifti.dhw_spacing(img, translator.axis)
    y = np.stack([translator.translate(v, w, spacing) for v, w in zip(slices, windows)])
    if fmt == "nifti":
      target = os.path.join(output, out_rel)
      os.makedirs(os.path.dirname(target), exist_ok=True)
      nifti.write_like(img, translator.target.from_model(y), translator.axis, target)
      written.append(target)
    else:
      target = os.path.join(output, os.path.dirname(out_rel), nifti.stem(out_rel))
      written += _write_png16_stack(target, y)
    name = os.path.relpath(target, output)
    translator.inputs[name] = (windows[0].to_json() if len(windows) == 1
                               else [w.to_json() for w in windows])
  return written, skipped


def translate_dicom(translator, root, output, fmt, salt_dir):
  """Translates every DICOM image series under `root` into `output`, named by
  pseudonym, never as DICOM.

  The pseudonyms' salt is kept in `salt_dir` (the run directory, private),
  never in `output`, the folder a user hands on.

  nifti: `series-<pseudonym>.nii.gz` in the target window's units, placed
  where the series lies in the patient (`dicom.series_affine`), so that it
  overlays the scan it came from. A series that cannot be given one affine
  (slices of several orientations, uneven spacing, gantry tilt) is skipped
  with the reason; one with no orientation or position at all is written
  with its pixel spacing only, and a warning says so. png16:
  `series-<pseudonym>/NNNN.png`.

  Returns:
    (written paths, [(input path or series name, reason)] skipped).
  """
  require("pydicom", "DICOM inputs")
  pseudonym = pseudonyms.Pseudonym(pseudonyms.load_or_create_salt(
      os.path.join(salt_dir, pseudonyms.SALT_NAME)))
  volumes, scan_skipped, _, _ = dicom.scan(root, pseudonym)
  skipped = [(os.path.join(root, s["key"]), s["reason"]) for s in scan_skipped]
  written = []
  for v in volumes:
    name = f"series-{v.id}"
    affine = None
    if fmt == "nifti":
      try:
        affine = dicom.series_affine(v)
      except (geometry.GeometryError, images.BadImageError) as e:
        skipped.append((name, f"cannot be placed in the patient by one affine: {e} "
                              "(--format=png16 writes its slices without one)"))
        continue
      if affine is None:
        logging.warning("%s has no ImageOrientationPatient or ImagePositionPatient: written "
                        "with its pixel spacing only, not placed in the patient", name)
    try:
      values = np.stack([dicom.slice_values(ref) for ref in v.refs])
    except images.BadImageError as e:
      skipped.append((name, str(e)))
      continue
    if values.ndim != 3:
      skipped.append((name, "colour series: no modality units to window"))
      continue
    window = translator.window_for(values)
    # (D, H, W) mm: the affine maps (column, row, slice) indices to mm.
    y = translator.translate(values, window, None if affine is None else
                             tuple(np.linalg.norm(affine[:3, [2, 1, 0]], axis=0)))
    if fmt == "nifti":
      target = os.path.join(output, f"{name}.nii.gz")
      if affine is not None:
        nifti.write_series(translator.target.from_model(y), affine, target)
      else:
        spacing = v.info.get("pixel_spacing") or [1.0, 1.0]  # [between rows, between columns]
        nifti.write_stack(translator.target.from_model(y), target,
                          zooms=(spacing[1], spacing[0], 1.0))
      written.append(target)
    else:
      target = os.path.join(output, name)
      written += _write_png16_stack(target, y[None])
    translator.inputs[os.path.relpath(target, output)] = window.to_json()
  for path, reason in skipped:
    logging.warning("Skipped %s: %s", path, reason)
  return written, skipped
