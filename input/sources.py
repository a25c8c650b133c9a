"""Conversion sources by scheme: the one list of the `KIND:ARG` specs that
`pipeline.convert --source` takes (and `--data` and `--real`, through
`input.cache`), for building them, for --help and for error messages.

A source lists its examples as lightweight, picklable `Item`s per split, and
loads one item into an `Example`. Loading happens in worker processes, so a
source must pickle (it holds paths and options, never open files). The one
exception is `tfds:`, which streams its split in order in the main process.

| spec                     | kind     | splits          | labels                  |
|--------------------------|----------|-----------------|-------------------------|
| `folder:DIR`             | image    | train           | first-level subfolder   |
| `tfds:NAME[:SPLIT]`      | image    | the TFDS splits | the first ClassLabel    |
| `npz:FILE`               | image or vector (x of rank 2) | train | `y`        |
| `paired:DIR_A,DIR_B`     | paired   | train           | none                    |
| `paired:DIR`             | paired   | train           | none (each image is A|B) |
| `unpaired:DIR_A,DIR_B`   | unpaired | trainA, trainB  | none                    |
| `builtin:NAME`           | see `input.builtin` |      |                         |
| `dicom:DIR`              | image    | train           | none (see `input.medical`) |
| `nifti:FILE_OR_DIR`      | image    | train           | none                    |
| `paired:dicom:A,B`, `paired:nifti:A,B` | paired | train | none                 |
| `unpaired:dicom:A,B`, `unpaired:nifti:A,B` | unpaired | trainA, trainB | none   |

The sources themselves live in `input.folders` (image files),
`input.datasets` (npz, builtin, tfds) and `input.medical.source`.
"""

import collections.abc
import dataclasses
import functools
import os

from input import builtin
from input import datasets
from input import folders
from input.medical import dicom
from input.medical import nifti
from input.medical import source as medical
from input.medical import volume_records
from input.source_base import SourceError


@dataclasses.dataclass(frozen=True)
class Scheme:
  """One form of source spec, `PREFIX:ARG`.

  Attributes:
    prefix: what precedes `:ARG` (`folder`, or `paired:dicom`).
    usage: the spec's forms, for --help.
    build: `(spec, arg, settings, pseudonym_salt) -> Source`.
    local: ARG names local paths, comma separated (the output must not be
      inside them; the cache fingerprints their files).
    reads: the settings that only some sources read and that this one does;
      another source refuses them (`build`).
    cacheable: a data flag may name it, to be converted into the cache with
      default settings; not when its settings must be chosen (a scan's
      window and held-out patients).
    label: the format in messages, where it is not cacheable.
  """
  prefix: str
  usage: str
  build: collections.abc.Callable
  local: bool = False
  reads: tuple = ()
  cacheable: bool = True
  label: str = ""


def _folder(spec, arg, settings, pseudonym_salt):
  del pseudonym_salt
  return folders.FolderSource(spec, arg, settings.labels)


def _paired(spec, arg, settings, pseudonym_salt):
  del settings, pseudonym_salt
  return folders.PairedSource(spec, [d for d in arg.split(",") if d])


def _unpaired(spec, arg, settings, pseudonym_salt):
  del settings, pseudonym_salt
  return folders.UnpairedSource(spec, [d for d in arg.split(",") if d])


def _npz(spec, arg, settings, pseudonym_salt):
  del settings, pseudonym_salt
  return datasets.NpzSource(spec, arg)


def _builtin(spec, arg, settings, pseudonym_salt):
  del pseudonym_salt
  return datasets.BuiltinSource(spec, arg, seed=settings.seed, image_size=settings.image_size)


def _tfds(spec, arg, settings, pseudonym_salt):
  del pseudonym_salt
  name, _, split = arg.partition(":")
  return datasets.TfdsSource(spec, name, split or None, data_dir=settings.tfds_data_dir)


def _build_medical(spec, arg, settings, pseudonym_salt, *, reader, mode):
  """Slices (`medical.build`), or whole volumes with --volumes."""
  build = volume_records.build if getattr(settings, "volumes", False) else medical.build
  return build(spec, arg, settings, pseudonym_salt, reader=reader, mode=mode)


def _medical(reader, mode, usage):
  return Scheme(reader.name if mode == "image" else f"{mode}:{reader.name}", usage,
                functools.partial(_build_medical, reader=reader, mode=mode), local=True,
                reads=reader.reads + medical.MODE_READS.get(mode, ()) + medical.VOLUME_READS,
                cacheable=False, label=reader.label)


SCHEMES = (
    Scheme("folder", "folder:DIR", _folder, local=True, reads=("labels",)),
    Scheme("tfds", "tfds:NAME[:SPLIT]", _tfds, reads=("tfds_data_dir",)),
    Scheme("npz", "npz:FILE", _npz, local=True),
    Scheme("paired", "paired:DIR_A,DIR_B | paired:DIR (A|B side by side)", _paired,
           local=True),
    Scheme("unpaired", "unpaired:DIR_A,DIR_B", _unpaired, local=True),
    Scheme("builtin", f"builtin:NAME ({', '.join(builtin.names())})", _builtin),
    _medical(dicom.READER, "image", "dicom:DIR"),
    _medical(nifti.READER, "image", "nifti:FILE_OR_DIR"),
    _medical(dicom.READER, "paired", "paired:dicom:DIR_A,DIR_B"),
    _medical(nifti.READER, "paired", "paired:nifti:A,B"),
    _medical(dicom.READER, "unpaired", "unpaired:dicom:A,B"),
    _medical(nifti.READER, "unpaired", "unpaired:nifti:A,B"),
)
# Longest prefix first, so that `paired:dicom:A,B` is not `paired:` of "dicom:A".
_BY_PREFIX = sorted(SCHEMES, key=lambda s: -len(s.prefix))
KINDS = tuple(dict.fromkeys(s.prefix.split(":")[0] for s in SCHEMES))
# The settings that some sources read and the others refuse.
_SOURCE_SETTINGS = tuple(dict.fromkeys(r for s in SCHEMES for r in s.reads))
_HINTS = {"patient_from": " (image folders: a BIDS sub- name or the folder)"}


def usage():
  """Every form of spec, for --help: `folder:DIR | tfds:NAME[:SPLIT] | ...`."""
  return " | ".join(s.usage for s in SCHEMES)


def find(spec):
  """The `Scheme` of `spec`, or None when no scheme matches."""
  for scheme in _BY_PREFIX:
    if spec.startswith(scheme.prefix + ":"):
      return scheme
  return None


def unknown_message(spec):
  """The one line that names an unknown source and the valid kinds."""
  return (f"unknown source {spec!r}; expected KIND:ARG with KIND one of "
          f"{', '.join(KINDS)}")


def local_paths(spec):
  """The local paths a spec names ([] for generated or downloaded data, and
  for an unknown spec)."""
  scheme = find(spec)
  if scheme is None or not scheme.local:
    return []
  return [p for p in spec[len(scheme.prefix) + 1:].split(",") if p]


def build(spec, settings, pseudonym_salt=None):
  """The `Source` that `spec` names.

  Args:
    spec: `KIND:ARG` (see the table).
    settings: the conversion's settings (a `ConvertConfig`): each source reads
      the fields it needs.
    pseudonym_salt: returns the salt of the pseudonyms, for the sources that
      name series and patients by them (dicom and nifti); called at most
      once, after the spec and settings are checked.

  Raises:
    SourceError: an unknown kind (the message lists the valid ones), a bad
      argument, a setting that this kind of source does not read (given a
      value other than its default), or a missing `[medical]` extra.
  """
  scheme = find(spec)
  if scheme is None:
    raise SourceError(unknown_message(spec))
  defaults = {f.name: f.default for f in dataclasses.fields(settings)}
  for name in _SOURCE_SETTINGS:
    if name not in scheme.reads and getattr(settings, name) != defaults[name]:
      users = [s.prefix for s in SCHEMES if name in s.reads]
      # `dicom: and nifti:` stand for their paired and unpaired forms too.
      readers = " and ".join(f"{p}:" for p in ([p for p in users if ":" not in p] or users))
      raise SourceError(f"--{name} applies to {readers} sources, not {spec!r}"
                        f"{_HINTS.get(name, '')}")
  return scheme.build(spec, spec[len(scheme.prefix) + 1:], settings, pseudonym_salt)


def source_dirs(spec):
  """The folders among the spec's local paths: the output must not be inside them."""
  return [p for p in local_paths(spec) if os.path.isdir(p)]
