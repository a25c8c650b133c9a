"""The source registry (`input.sources`): one list of schemes that builds
sources and writes --help and the error messages."""

from absl.testing import parameterized
import tensorflow as tf

from input import convert
from input import datasets
from input import folders
from input import sources
from input.medical import dicom
from input.medical import nifti
from input.medical import source as medical


def _config(**kwargs):
  return convert.ConvertConfig(output="unused", **kwargs)


class RegistryTest(tf.test.TestCase, parameterized.TestCase):

  def test_help_lists_every_scheme(self):
    help_text = convert.ConvertConfig.__dataclass_fields__["source"].metadata["help"]
    for scheme in sources.SCHEMES:
      self.assertIn(scheme.usage, help_text)

  @parameterized.parameters(
      ("folder:/d", "folder"), ("paired:/a,/b", "paired"), ("paired:/ab", "paired"),
      ("paired:dicom:/a,/b", "paired:dicom"), ("unpaired:nifti:/a,/b", "unpaired:nifti"),
      ("dicom:/d", "dicom"), ("tfds:mnist:train", "tfds"), ("builtin:shapes", "builtin"))
  def test_the_longest_prefix_wins(self, spec, prefix):
    self.assertEqual(sources.find(spec).prefix, prefix)

  def test_an_unknown_source_lists_the_kinds(self):
    self.assertIsNone(sources.find("zip:/x"))
    self.assertIsNone(sources.find("folder"))  # No ":ARG".
    with self.assertRaisesRegex(sources.SourceError,
                                "^unknown source 'zip:/x'; expected KIND:ARG with KIND one of "
                                "folder, tfds, npz, paired, unpaired, builtin, dicom, nifti$"):
      sources.build("zip:/x", _config())

  def test_local_paths(self):
    self.assertEqual(sources.local_paths("paired:dicom:/a,/b"), ["/a", "/b"])
    self.assertEqual(sources.local_paths("folder:/d"), ["/d"])
    self.assertEqual(sources.local_paths("builtin:shapes"), [])
    self.assertEqual(sources.local_paths("tfds:mnist"), [])
    self.assertEqual(sources.local_paths("zip:/x"), [])

  def test_only_scans_need_their_own_conversion(self):
    self.assertEqual({s.prefix for s in sources.SCHEMES if not s.cacheable},
                     {"dicom", "nifti", "paired:dicom", "paired:nifti", "unpaired:dicom",
                      "unpaired:nifti"})

  @parameterized.parameters(
      ("folder", {"window": "40,80"}, r"^--window applies to dicom: and nifti: sources, not"),
      ("folder", {"patient_from": "folder:1"},
       r"^--patient_from applies to dicom: and nifti: sources, not .*\(image folders: a BIDS"),
      ("paired", {"slice_axis": "coronal"}, r"^--slice_axis applies to nifti: sources"),
      ("dicom", {"volume_index": "all"}, r"^--volume_index applies to nifti: sources"),
      ("dicom", {"labels": "none"}, r"^--labels applies to folder: sources"),
      ("nifti", {"tfds_data_dir": "/t"}, r"^--tfds_data_dir applies to tfds: sources"))
  def test_a_setting_the_source_does_not_read_is_refused(self, kind, settings, message):
    root = self.create_tempdir().full_path
    asked = []
    with self.assertRaisesRegex(sources.SourceError, message):
      sources.build(f"{kind}:{root}", _config(**settings),
                    pseudonym_salt=lambda: asked.append(1) or "0" * 64)
    self.assertEqual(asked, [])

  def test_each_kind_builds_its_source(self):
    root = self.create_tempdir().full_path
    for spec, cls in ((f"folder:{root}", folders.FolderSource),
                      (f"paired:{root},{root}", folders.PairedSource),
                      (f"unpaired:{root},{root}", folders.UnpairedSource),
                      ("builtin:shapes", datasets.BuiltinSource)):
      self.assertIsInstance(sources.build(spec, _config()), cls, msg=spec)

  def test_scans_get_their_reader_options_and_salt(self):
    root = self.create_tempdir().full_path
    asked = []

    def salt():
      asked.append(1)
      return "ab" * 32

    source = sources.build(f"unpaired:nifti:{root},{root}",
                           _config(window="ct_brain", slice_axis="coronal"), salt)
    self.assertIsInstance(source, medical.MedicalSource)
    self.assertIs(source.reader, nifti.READER)
    self.assertEqual((source.kind, source.options.slice_axis), ("unpaired", "coronal"))
    self.assertEqual(source.options.window.name, "ct_brain")
    self.assertEqual(source.extra_manifest()["medical"]["window"], "ct_brain")
    self.assertIs(sources.build(f"dicom:{root}", _config(), salt).reader, dicom.READER)
    self.assertLen(asked, 2)  # Once per source, after its checks.
    with self.assertRaisesRegex(sources.SourceError, "--window=40: expected CENTER,WIDTH"):
      sources.build(f"dicom:{root}", _config(window="40"), salt)
    self.assertLen(asked, 2)  # A bad setting makes no salt.

  def test_image_sources_never_ask_for_a_salt(self):
    root = self.create_tempdir().full_path

    def salt():
      raise AssertionError("an image folder asked for a pseudonym salt")

    sources.build(f"folder:{root}", _config(), salt)
    sources.build("builtin:ring2d", _config(), salt)


if __name__ == "__main__":
  tf.test.main()
