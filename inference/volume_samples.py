"""Samples of a run trained on volumes (`pipeline.sample`): one NIfTI volume
per sample, in modality units, with the training voxel spacing.

A generated volume is [D, H, W, 1] in [-1, 1], D along the conversion's slice
axis and H, W the rows and columns of its slices (`nifti.volume_to_slices`
order). It is written as `nifti.slices_to_volume` lays slices out in RAS+
voxel order, mapped to modality units by the generated domain's window
(`Window.from_model`), with an identity orientation scaled by the training
spacing (`DataInfo.voxel_spacing`): a sample is no patient's, so it is
placed nowhere in particular, as the 2-D sample stack is not
(`nifti.write_stack`).
"""

import os

from absl import logging
import numpy as np

from input.medical import nifti
from input.medical import volume as medical_volume
from inference import volumes

NAME = "{:05d}.nii.gz"


def check_format(fmt, output, data):
  """Refuses, before sampling, what volumes cannot be written as.

  Args:
    fmt: --format (None: by --output's name).
    output: --output.
    data: the run's `DataInfo`, of volumes (`volumes.is_volume_run`).

  Raises:
    ValueError: one line: a PNG format (a volume is no image; a *.png grid
      of mid-planes and *.npz are fine), 3-channel data or data without a
      window as NIfTI.
  """
  if fmt is None and output.endswith((".npz", ".png")):
    return
  if fmt != "nifti":
    given = f"--format={fmt}" if fmt else f"--output={output!r} (a folder of PNGs)"
    raise ValueError(f"{given} writes 2-D images, and this run's samples are volumes "
                     f"{tuple(data.shape)}: use --format=nifti (one NIfTI volume per sample), "
                     "--output=*.npz, or --output=*.png (a grid of their three mid-planes)")
  if data.shape[-1] != 1:
    raise ValueError(f"--format=nifti writes 1-channel samples; this run's volumes have "
                     f"{data.shape[-1]} channels (use --output=*.npz)")
  if volumes.domain_window(data, volumes.generated_domain(data)) is None:
    raise ValueError("--format=nifti needs the data's window to map samples to modality "
                     "units, and this run's data has none (not converted from dicom: or "
                     "nifti:); use --output=*.npz")
  volumes.require("nibabel", "NIfTI samples")


def voxel_spacing(data):
  """The spacing of generated voxels, (D, H, W) in mm, logged in one line:
  the generated domain's `DataInfo.voxel_spacing` (the training volumes'
  after resampling), or 1 mm when the run does not know it."""
  domain = volumes.generated_domain(data)
  spacing = (getattr(data, "voxel_spacing", None) or {}).get(domain)
  if not spacing:
    logging.info("NIfTI samples: 1 mm voxels; the training volumes' spacing is not known")
    return 1.0, 1.0, 1.0
  logging.info("NIfTI samples: %s mm voxels (slices x rows x columns), the training "
               "volumes' spacing", " x ".join(f"{s:.4g}" for s in spacing))
  return tuple(float(s) for s in spacing)


def ras_zooms(spacing, axis):
  """(D, H, W) spacing of volumes sliced along `axis` -> the voxel size of
  the RAS+ volume `nifti.slices_to_volume` makes of them: D lies along the
  axis, rows along the later of the other two axes, columns along the
  earlier (`nifti.plane_spacing` read backwards)."""
  a = nifti.AXES[axis]
  u, v = (i for i in range(3) if i != a)
  zooms = [0.0, 0.0, 0.0]
  zooms[a], zooms[v], zooms[u] = spacing
  return tuple(zooms)


def write(folder, x, data):
  """Writes volume samples [N, D, H, W, 1] in [-1, 1] as `NNNNN.nii.gz` in
  `folder`, with window.json.

  Returns:
    The paths written (window.json not counted).
  """
  nib = medical_volume.require("nibabel", "NIfTI samples")
  domain = volumes.generated_domain(data)
  window = volumes.domain_window(data, domain)
  axis = (data.medical or {}).get("slice_axis", "axial")
  spacing = voxel_spacing(data)
  affine = np.diag(ras_zooms(spacing, axis) + (1.0,))
  os.makedirs(folder, exist_ok=True)
  written = []
  for i, volume in enumerate(np.asarray(x)):
    img = nib.Nifti1Image(nifti.slices_to_volume(window.from_model(volume[..., 0]), axis),
                          affine)
    img.header.set_xyzt_units("mm")
    written.append(os.path.join(folder, NAME.format(i)))
    nib.save(img, written[-1])
  volumes.write_window_json(folder, {
      "format": "nifti", "domain": domain, "window": volumes.window_entry(data, domain),
      "medical": data.medical, "voxel_spacing": list(spacing), "slice_axis": axis,
      "mapping": "voxels in modality units: low + (x + 1) / 2 * (high - low)"})
  return written
