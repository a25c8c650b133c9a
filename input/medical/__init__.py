"""Medical input: DICOM series and NIfTI volumes as stacks of 2-D slices.

- `source`: the `dicom:`/`nifti:` conversion sources (`MedicalSource`).
- `dicom`, `nifti`: the readers (pydicom and nibabel, the `[medical]` extra).
- `volume`: what both readers produce (`Volume`), and the extra's check.
- `window`: intensity windows, from modality units to stored codes and back.
- `identity`: who the patient, study and series of an input are.
- `pseudonyms`: salted names for them, and the private salt.
- `splits`: `--holdout`, a held-out split that shares no patient with train.
- `volume_records`: `--volumes`, whole volumes (or paired 3-D patches) as
  records; `resample` resizes them (the 3-D form of `images.resize`) and
  `mask` finds the body (`auto_mask`) that patches are sampled in.
- `phantom`: a synthetic head phantom (T1w, T2w, CT) from a seed;
  `phantom_files` writes it as BIDS-named NIfTI or DICOM series.

This file imports nothing, so that a module of the package can be imported
without the others.
"""
