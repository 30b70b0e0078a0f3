"""Pseudonymous user ids: HMAC-SHA256(key, user_id) as 64 hex characters, computed inside Spark.

HMAC is sha256((K ^ opad) || sha256((K ^ ipad) || msg)) with K the key padded to SHA-256's 64-byte block. The
key is fixed for a run, so both padded keys are binary literals and the whole HMAC is two `sha2` calls in the
JVM: no Python worker, about as fast as a plain `sha2` (a pandas UDF with `hmac` ships every id to Python and
back through Arrow). The literals sit in the query plan: keep Spark UI access as private as the key.

The key comes from LAKEREC_PSEUDO_KEY, else etl.pseudonymise.key_file; without either, the local profiles
generate one per lake under etl.pseudonymise.key_dir (named by a hash of the lake path), and the cluster
profile (generate_key: false) stops with an error. Never from the repo or the lake: whoever reads the lake
must not be able to re-identify users.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from pyspark.sql import Column
from pyspark.sql import functions as F

from lakerec.config import PseudonymiseConf, env_variable, secret

KEY_ENV = env_variable("secret.pseudonym_key")  # LAKEREC_PSEUDO_KEY
_BLOCK = 64  # SHA-256 block size in bytes


class PseudonymKeyError(RuntimeError):
    """No usable key: worded for the person running the job."""


def load_key(conf: PseudonymiseConf, lake_root: str) -> bytes:
    """The key bytes: env, else key_file, else the lake's generated key (created on first use if allowed)."""
    from_env = secret("pseudonym_key")
    if from_env:
        return from_env.encode()
    if conf.key_file:
        path = Path(conf.key_file).expanduser()
        if not path.is_file():
            raise PseudonymKeyError(f"etl.pseudonymise.key_file {path} does not exist")
        key = path.read_bytes().strip()
        if not key:
            raise PseudonymKeyError(f"etl.pseudonymise.key_file {path} is empty")
        return key
    path = generated_key_path(conf, lake_root)
    if path.is_file():
        return path.read_bytes().strip()
    if not conf.generate_key:
        raise PseudonymKeyError(
            f"no pseudonymisation key: set {KEY_ENV} or etl.pseudonymise.key_file (this profile does not generate "
            "keys: a generated key on one machine would give other ids than the next run's)")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return path.read_bytes().strip()


def generated_key_path(conf: PseudonymiseConf, lake_root: str) -> Path:
    lake = hashlib.sha256(lake_root.encode()).hexdigest()[:16]
    return Path(conf.key_dir).expanduser() / f"{lake}.key"


def hmac_sha256(text: Column, key: bytes) -> Column:
    """HMAC-SHA256(key, utf-8 of text) as lower-case hex, in Spark SQL (null stays null)."""
    block = hashlib.sha256(key).digest() if len(key) > _BLOCK else key
    block = block.ljust(_BLOCK, b"\0")
    ipad = bytearray(b ^ 0x36 for b in block)
    opad = bytearray(b ^ 0x5C for b in block)
    inner = F.unhex(F.sha2(F.concat(F.lit(ipad), F.encode(text, "UTF-8")), 256))
    return F.sha2(F.concat(F.lit(opad), inner), 256)


def pseudonym(user_id: str, key: bytes) -> str:
    """The same HMAC in Python: to look a raw user id up in silver (tests, support requests)."""
    return hmac.new(key, user_id.encode(), hashlib.sha256).hexdigest()
