"""Every flag of every binary, defined in one place: from the configs.

A binary's flags are the `settings` fields of its config dataclass
(`define_config_flags`), whose default and help text are written there and
nowhere else; `config_from_flags` turns the parsed flags back into the frozen
config. Each binary calls `define_config_flags` at import time and
`config_from_flags` only in its `main`. Library code never reads FLAGS, so
tests build configs directly.
"""

from absl import flags

import settings


def define_config_flags(config_cls, flag_values=flags.FLAGS):
  """Defines one absl flag per setting of `config_cls` (a dataclass)."""
  for field in settings.settings_of(config_cls):
    kind = settings.flag_kind(field)
    name, help_text = field.name, field.metadata["help"]
    default = settings.flag_default(field)
    if kind == "enum":
      choices = [str(c) for c in field.metadata["choices"]]
      flags.DEFINE_enum(name, None if default is None else str(default), choices, help_text,
                        flag_values=flag_values)
    elif kind in ("list", "int_list"):
      flags.DEFINE_list(name, [str(v) for v in default or ()], help_text,
                        flag_values=flag_values)
    else:
      define = {"string": flags.DEFINE_string, "integer": flags.DEFINE_integer,
                "float": flags.DEFINE_float, "bool": flags.DEFINE_bool}[kind]
      define(name, default, help_text, flag_values=flag_values)


def config_from_flags(config_cls, flag_values=flags.FLAGS, **values):
  """The frozen `config_cls` from parsed flags; `values` fill its other fields.

  Raises:
    ValueError: a required flag not given (naming every one missing), or a
      list flag whose items are not integers where they must be.
  """
  missing = [f.name for f in settings.settings_of(config_cls)
             if f.metadata.get("required") and flag_values[f.name].value in (None, "")]
  if missing:
    raise ValueError(f"--{', --'.join(missing)} required")
  for field in settings.settings_of(config_cls):
    value = flag_values[field.name].value
    kind = settings.flag_kind(field)
    if kind == "enum" and value is not None and settings.base_type(field) is int:
      value = int(value)
    elif kind == "int_list":
      try:
        value = tuple(int(v) for v in value or ())
      except ValueError:
        raise ValueError(f"--{field.name} must be a comma list of integers, got "
                         f"{','.join(value)!r}") from None
    elif kind == "list":
      value = tuple(value or ())
    values[field.name] = value
  return config_cls(**values)


def define_worker_command_flags():
  """Flags of the launchers that start training processes (`launch.*`).

  Defined once per process: tests import several launchers.
  """
  if "module" in flags.FLAGS:
    return
  flags.DEFINE_string("python", None,
                      "Python interpreter of the training processes. Default: the one "
                      "running this launcher.")
  flags.DEFINE_string("module", "pipeline.train",
                      "Module each training process runs with `python -m` (tests swap in a "
                      "fake worker).")


def define_launch_local_flags():
  """Flags of `launch.local`."""
  define_worker_command_flags()
  flags.DEFINE_integer("workers", 2, "Worker processes to start on this machine.")
  flags.DEFINE_float("grace_seconds", 30.0,
                     "When stopping: seconds between SIGTERM and SIGKILL (the workers save a "
                     "checkpoint on SIGTERM).")
