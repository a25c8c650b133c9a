"""Typed settings: dataclass fields that are also command-line flags.

Every binary's config is a frozen dataclass whose fields are declared with
`setting` (or `required`): the default and the help text are written there,
once, and `pipeline/flags.py` turns the fields into absl flags and the parsed
flags back into the config. Library code never sees a flag.

    @dataclasses.dataclass(frozen=True)
    class SampleConfig:
      model_dir: str = required("Run directory of pipeline.train.")
      num: int = setting(64, "Number of samples.")

The flag's type follows the field's annotation (`str`, `int`, `float`,
`bool`, each optionally `| None`); `choices` makes it an enum, and tuples
name their element type with `kind="list"` (strings) or `kind="int_list"`.
A field declared without `setting` (e.g. a value the binary fills in itself)
has no flag.
"""

import dataclasses
import types

KINDS = ("string", "integer", "float", "bool", "enum", "list", "int_list")
_BY_TYPE = {str: "string", int: "integer", float: "float", bool: "bool"}


def setting(default, help, *, choices=None, kind=None):  # pylint: disable=redefined-builtin
  """A dataclass field with a default that is also a flag.

  Args:
    default: the one default, of the config and of the flag.
    help: the one help text.
    choices: the valid values (the flag is an enum).
    kind: for tuples, "list" or "int_list"; else derived from the annotation.
  """
  if isinstance(default, list):
    raise TypeError("use a tuple default: a frozen config must hold no mutable value")
  return dataclasses.field(default=default, metadata={
      "help": help, "choices": tuple(choices) if choices else None, "kind": kind})


def required(help, *, kind=None):  # pylint: disable=redefined-builtin
  """A dataclass field without a default that is also a flag (default None:
  the config's `validate` says it is missing)."""
  return dataclasses.field(metadata={"help": help, "choices": None, "kind": kind,
                                     "required": True})


def is_setting(field):
  return "help" in field.metadata


def base_type(field):
  """The annotation without `| None`."""
  t = field.type
  if isinstance(t, types.UnionType):
    args = [a for a in t.__args__ if a is not type(None)]
    t = args[0] if len(args) == 1 else t
  return t


def flag_kind(field):
  """One of KINDS for a setting."""
  meta = field.metadata
  if meta.get("kind"):
    return meta["kind"]
  if meta.get("choices"):
    return "enum"
  t = base_type(field)
  if t not in _BY_TYPE:
    raise TypeError(f"setting {field.name!r}: give kind= for type {field.type}")
  return _BY_TYPE[t]


def flag_default(field):
  """The flag's default: the field's (None for a required field)."""
  if field.default is dataclasses.MISSING:
    return None
  return field.default


def settings_of(config_cls):
  """The fields of `config_cls` that are flags, in declaration order."""
  return [f for f in dataclasses.fields(config_cls) if is_setting(f)]
