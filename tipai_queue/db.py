"""Engine and sessions. One engine per process, created lazily so a forked worker child never shares sockets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from tipai_queue.settings import get_settings


def redact(url: str) -> str:
    """A URL fit for an error message: the password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a SQLAlchemy URL (a redis:// one, say): hide anything between ':' and '@'
        head, sep, tail = url.partition("@")
        if not sep:
            return url
        scheme, _, creds = head.partition("://")
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{tail}" if ":" in creds else url


@lru_cache
def _engine(url: str, pid: int) -> Engine:
    # pool_pre_ping: a Postgres restart leaves dead sockets in the pool; ping replaces them instead of failing a task.
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args={"connect_timeout": 5})


def engine() -> Engine:
    return _engine(get_settings().database_url, os.getpid())


@contextmanager
def session_scope() -> Iterator[Session]:
    """A transaction: committed on success, rolled back on error."""
    session = sessionmaker(bind=engine(), expire_on_commit=False)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def ping() -> None:
    with engine().connect() as conn:
        conn.execute(text("SELECT 1"))
