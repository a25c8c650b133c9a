"""Settings: every binary's flags are generated from its config, so a default
or a help text is written once; algorithms refuse settings they do not read."""

import dataclasses

from absl import flags
from absl.testing import parameterized
import tensorflow as tf

import algorithms
from evaluation import evaluate
from inference import export
from inference import sampling
from inference import translate
from input import convert
from pipeline import flags as pipeline_flags
import settings
from training import config as config_lib

CONFIGS = {
    "train": config_lib.TrainConfig, "convert": convert.ConvertConfig,
    "evaluate": evaluate.EvaluateConfig, "export": export.ExportConfig,
    "translate": translate.TranslateConfig, "sample": sampling.SampleConfig,
}


def _parsed(config_cls, *argv):
  fv = flags.FlagValues()
  pipeline_flags.define_config_flags(config_cls, fv)
  fv(["prog", *argv])
  return fv


def _flag_value(field):
  """A field's default as absl holds it as the flag's default."""
  default = field.default
  if default is dataclasses.MISSING:
    return None
  if isinstance(default, tuple):
    return [str(v) for v in default]
  if field.metadata["choices"] and default is not None:
    return str(default)  # absl's enums hold strings (e.g. --bit_depth=8).
  return default


class FlagsFromConfigTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(*CONFIGS.items())
  def test_flags_are_the_settings_with_their_defaults_and_help(self, config_cls):
    fields = settings.settings_of(config_cls)
    required = {f.name: f"/given/{f.name}" for f in fields if f.default is dataclasses.MISSING}
    fv = _parsed(config_cls, *(f"--{k}={v}" for k, v in required.items()))
    self.assertEqual(set(fv), {f.name for f in fields})
    for field in fields:
      # absl prefixes an enum's help with its choices.
      self.assertTrue(fv[field.name].help.endswith(field.metadata["help"]), field.name)
      self.assertEqual(fv[field.name].default, _flag_value(field), field.name)
      self.assertEqual(fv[field.name].value, required.get(field.name, _flag_value(field)))
      self.assertTrue(field.metadata["help"].strip(), field.name)
    # The config from flags left at their defaults is the config's own defaults.
    extra = {f.name: f.default for f in dataclasses.fields(config_cls)
             if not settings.is_setting(f)}
    from_flags = pipeline_flags.config_from_flags(config_cls, fv, **extra)
    self.assertEqual(from_flags, config_cls(**required, **extra))

  def test_missing_required_flags_are_named_together(self):
    with self.assertRaisesRegex(ValueError, r"^--model_dir, --input, --output required$"):
      pipeline_flags.config_from_flags(translate.TranslateConfig,
                                       _parsed(translate.TranslateConfig))

  def test_values_are_converted_to_the_field_types(self):
    fv = _parsed(config_lib.TrainConfig, "--mlp_hidden=8,16", "--cluster_workers=a:1,b:2",
                 "--lr_g=0.5", "--nojitter", "--precision=float32")
    config = pipeline_flags.config_from_flags(config_lib.TrainConfig, fv)
    self.assertEqual(config.mlp_hidden, (8, 16))
    self.assertEqual(config.cluster_workers, ("a:1", "b:2"))
    self.assertEqual((config.lr_g, config.jitter, config.precision), (0.5, False, "float32"))
    fv = _parsed(convert.ConvertConfig, "--channels=3", "--bit_depth=16", "--output=o")
    config = pipeline_flags.config_from_flags(convert.ConvertConfig, fv)
    self.assertEqual((config.channels, config.bit_depth), (3, 16))
    fv = _parsed(sampling.SampleConfig, "--labels=0,2", "--model_dir=m", "--output=o")
    self.assertEqual(pipeline_flags.config_from_flags(sampling.SampleConfig, fv).labels, (0, 2))

  def test_bad_integer_list_names_the_flag(self):
    fv = _parsed(config_lib.TrainConfig, "--mlp_hidden=8,x")
    with self.assertRaisesRegex(ValueError, r"--mlp_hidden must be a comma list of integers, "
                                            r"got '8,x'"):
      pipeline_flags.config_from_flags(config_lib.TrainConfig, fv)

  def test_enum_flags_refuse_other_values(self):
    with self.assertRaises(flags.IllegalFlagValueError):
      _parsed(config_lib.TrainConfig, "--precision=float64")

  def test_a_mutable_default_is_refused(self):
    with self.assertRaisesRegex(TypeError, "tuple"):
      settings.setting([1, 2], "help")


class AlgorithmSettingsTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(
      ("pix2pix", "gp_weight", 10.0, "cdcgan, cgan, dcgan, gan, lsgan, sn_wgan_gp, sngan, wgan, "
                                     "wgan_gp"),
      ("cyclegan", "ema_decay", 0.999, "cdcgan, cgan, dcgan, gan, lsgan, sn_wgan_gp, sngan, "
                                       "wgan, wgan_gp"),
      ("sngan", "cycle_weight", 3.0, "cyclegan, unit"),
      ("pix2pix", "label_embedding", 8, "cdcgan, cgan, dcgan, gan, lsgan, sn_wgan_gp, sngan, "
                                        "wgan, wgan_gp"),
      ("cyclegan", "augment", "color", "cdcgan, cgan, dcgan, gan, lsgan, pix2pix, sn_wgan_gp, "
                                       "sngan, wgan, wgan_gp"),
      ("pix2pix", "res_blocks", 3, "cyclegan, unit"),
      ("unit", "jitter", False, "pix2pix"),
  )
  def test_a_setting_the_algorithm_does_not_read_is_refused(self, algo, name, value, users):
    config = config_lib.TrainConfig(algo=algo, **{name: value})
    with self.assertRaisesRegex(
        ValueError, f"^--{name}={value} is not read by --algo={algo}; it is used by {users}$"):
      algorithms.check_settings(config)

  @parameterized.parameters(
      ("sngan", {"gp_weight": 10.0, "ema_decay": 0.999, "mlp_hidden": (8,)}),
      ("cdcgan", {"label_embedding": 8}),
      ("pix2pix", {"l1_weight": 50.0, "jitter": False, "direction": "BtoA"}),
      ("cyclegan", {"cycle_weight": 5.0, "pool_size": 0, "res_blocks": 3}),
      ("unit", {"kl_weight": 0.1, "l1_weight": 1.0}),
      # Another algorithm's setting at its default is not "given".
      ("pix2pix", {"ema_decay": None, "gp_weight": None}),
      ("pix2pix", {"augment": "translation"}),
      ("sngan", {"augment": "diffaugment", "ada_target": 0.6, "penalty": "r1", "r1_gamma": 1.0,
                 "conditional": True, "arch": "resnet", "ema_start": 100}),
  )
  def test_settings_the_algorithm_reads_pass(self, algo, values):
    algorithms.check_settings(config_lib.TrainConfig(algo=algo, **values))

  def test_every_declared_setting_is_a_train_setting(self):
    fields = {f.name for f in settings.settings_of(config_lib.TrainConfig)}
    for name in algorithms.names():
      declared = algorithms.get(name).hyperparameters()
      self.assertTrue(declared, name)
      self.assertLessEqual(declared, fields, name)


class SentinelTest(tf.test.TestCase):

  def test_runs_stored_with_the_old_g_loss_sentinel_load_as_none(self):
    config = config_lib.TrainConfig.from_dict({"algo": "sngan", "g_loss": "default"})
    self.assertIsNone(config.g_loss)


if __name__ == "__main__":
  tf.test.main()
