"""Pseudonyms for series, studies and patients: a salted HMAC of the raw
identity, and the private salt file that keeps them stable (mode 0600,
never in a manifest or a shard)."""

import hashlib
import hmac
import os
import secrets

SALT_NAME = "pseudonym_salt"


def new_salt():
  """32 random bytes, hex: the secret of a set of pseudonyms."""
  return secrets.token_hex(32)


def read_salt(path):
  """The salt in `path`, or None when there is no such file.

  Raises:
    OSError: a file that is not a salt written by this pipeline.
  """
  try:
    with open(path, encoding="utf-8") as f:
      salt = f.read().strip()
  except FileNotFoundError:
    return None
  if len(salt) != 64:
    raise OSError(f"{path} is not a salt written by this pipeline")
  return salt


def claim_salt(path, salt):
  """Writes `salt` to `path` unless a salt is there already; returns the one
  in the file and whether this call wrote it.

  The file is created exclusively (so that concurrent tasks agree on one
  salt) and private (mode 0600): without it a hash of a short PatientID
  could be reversed by trying every ID, so it never goes where outputs are
  shared.
  """
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  try:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
  except FileExistsError:
    return read_salt(path), False
  with os.fdopen(fd, "w") as f:
    f.write(salt)
    f.flush()
    os.fsync(f.fileno())
  return salt, True


def load_or_create_salt(path):
  """The salt in `path`, made there (private) when absent."""
  return read_salt(path) or claim_salt(path, new_salt())[0]


class Pseudonym:
  """`pseudonym(kind, value)`: a 12-hex-digit HMAC-SHA256 of `value` under a
  secret salt, prefixed by `kind`'s first letter (`s3f...`, `p9a...`)."""

  def __init__(self, salt):
    self.salt = salt.encode()

  def __call__(self, kind, value):
    digest = hmac.new(self.salt, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()
    return f"{kind[0]}{digest[:12]}"
