"""The study's storage: an Optuna RDB storage (SQLite file, or PostgreSQL shared by several
workers) with heartbeats, so a worker killed mid-trial loses only that trial; every failure to
open it is one line, with the password left out."""

from __future__ import annotations

import random
import re
import time

from ..errors import NnmpcError

HEARTBEAT_S = 10
GRACE_S = 60


def redact(url: str) -> str:
    """The URL without its password."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def _one_line(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    return re.sub(r"^\([\w.]+\)\s*", "", line).strip()


def open_storage(url: str):
    """An Optuna RDB storage with heartbeats, or one clear error line."""
    import optuna

    if not re.match(r"^[a-z][a-z0-9+]*://", url):
        raise NnmpcError(f"--storage {redact(url)}: not a database URL "
                         "(sqlite:///FILE or postgresql://USER@HOST:PORT/DB)")
    if url.startswith("sqlite"):
        kw = {"connect_args": {"timeout": 120}}
    elif url.startswith("postgresql"):
        kw = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    else:
        kw = {}
    for attempt in range(6):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kw,
                                              heartbeat_interval=HEARTBEAT_S,
                                              grace_period=GRACE_S)
        except Exception as e:
            # Workers started together on a new database race to create Optuna's tables
            # (PostgreSQL: a duplicate key in pg_type): the loser tries again.
            text = str(e)
            if attempt < 5 and ("duplicate key" in text or "already exists" in text):
                time.sleep(0.3 + random.random())
                continue
            _storage_error(url, e)


def _storage_error(url: str, e: Exception):
    if isinstance(e, ImportError):  # optuna wraps the driver's ModuleNotFoundError
        cause = e.__cause__ or e.__context__ or e
        name = getattr(cause, "name", None) or _one_line(cause)
        raise NnmpcError(f"--storage {redact(url)}: no database driver ({name}); for "
                         "PostgreSQL: pip install 'psycopg[binary]'") from None
    # sqlalchemy: bad URL, unknown dialect, server unreachable, refused login
    raise NnmpcError(f"--storage {redact(url)}: cannot open the study storage: "
                     f"{_one_line(e)}") from None


def _study_names(storage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]
