"""Throwaway servers and fake listeners on 127.0.0.1 for tests that need a server to fail.

The shared MariaDB, Redis and PostgreSQL must never be stopped, so a test that kills, stops or
pauses a server starts its own here. Every class is a context manager that kills its process
and deletes its files on exit, also when the test failed half-way.

Start-up times measured with `start_seconds` on the 2-core development machine, in two runs:
mariadb-install-db 1.5 to 2.4 s and initdb 0.7 to 1.7 s (each once per session, then the data
directory is copied), mariadbd 0.1 to 0.3 s, redis-server under 0.2 s, postgres about 0.1 s.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    """Return a TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.02):
    """Poll `condition` until it returns true; raise AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


class ServerProcess:
    """A server process on a fixed port that can be stopped, killed, paused and started again."""

    name = "server"

    def __init__(self):
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix=f"dashapp-{self.name}-"))
        self.process: subprocess.Popen | None = None
        self.log_path = self.directory / "server.log"
        self._paused = False

    def command(self) -> list[str]:
        raise NotImplementedError

    def is_ready(self) -> bool:
        return port_accepts(self.port)

    def start(self) -> "ServerProcess":
        """Start the process and wait until it accepts connections."""
        started = time.monotonic()
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log_file,
                                            stderr=subprocess.STDOUT, **self.popen_arguments())
        try:
            wait_until(lambda: self.process.poll() is None and self.is_ready(), START_TIMEOUT_S,
                       f"{self.name} on port {self.port} to accept connections")
        except AssertionError:
            self.kill()
            raise AssertionError(f"{self.name} did not start; log:\n{self.log_tail()}") from None
        # Seconds from launch to the first accepted connection, for the start-up times above.
        self.start_seconds = time.monotonic() - started
        return self

    def popen_arguments(self) -> dict:
        return {}

    def stop(self) -> None:
        """Stop the server the clean way (SIGTERM) and wait for it to exit."""
        self._signal_and_wait(signal.SIGTERM)

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash or the OOM killer would."""
        self._signal_and_wait(signal.SIGKILL)

    def pause(self) -> None:
        """Freeze the server with SIGSTOP: its sockets stay open but nothing answers.

        Returns once every thread of the server is stopped: a signal is delivered
        asynchronously, so a quick reply could otherwise still go out after kill() returns.
        """
        self.send_signal(signal.SIGSTOP)
        self._paused = True
        wait_until(lambda: _all_threads_stopped(self.process.pid), START_TIMEOUT_S,
                   f"{self.name} (pid {self.process.pid}) to stop")

    def resume(self) -> None:
        self.send_signal(signal.SIGCONT)
        self._paused = False

    def send_signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def connection_count(self) -> int:
        """Return how many TCP connections to the server's port are established now."""
        count = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except FileNotFoundError:
                continue
            for line in lines:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == self.port and fields[3] == "01":  # 01 is ESTABLISHED
                    count += 1
        return count

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def _signal_and_wait(self, signum: int) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.send_signal(signum)
        if self._paused and signum != signal.SIGKILL:
            self.resume()  # a stopped process does not act on SIGTERM until continued
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.send_signal(signal.SIGKILL)
            self.process.wait()
        self._paused = False

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


class RedisServer(ServerProcess):
    """A throwaway redis-server; `extra_args` adds options such as requirepass or TLS files.

    With `tls_port=True` the server listens only on a TLS port (`port`), with `--port 0`.
    """

    name = "redis"

    def __init__(self, *extra_args: str, tls_port: bool = False):
        super().__init__()
        self.extra_args = list(extra_args)
        self.tls_port = tls_port

    def command(self) -> list[str]:
        ports = ["--port", "0", "--tls-port", str(self.port)] if self.tls_port else ["--port", str(self.port)]
        return ["redis-server", *ports, "--bind", LOOPBACK, "--save", "", "--appendonly", "no",
                "--dir", str(self.directory), *self.extra_args]


def make_mariadb_datadir(directory: Path) -> Path:
    """Initialize a MariaDB data directory (root@localhost, empty password) and return it."""
    datadir = directory / "data"
    subprocess.run(
        ["mariadb-install-db", "--no-defaults", f"--datadir={datadir}", "--user=root",
         "--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve",
         *MariaDBServer.SMALL_INNODB],
        check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        timeout=120,
    )
    return datadir


class MariaDBServer(ServerProcess):
    """A throwaway mariadbd on a copy of a data directory made by make_mariadb_datadir."""

    name = "mariadb"
    # Small InnoDB files keep the data directory at about 80 MB and the start fast.
    SMALL_INNODB = ("--innodb-log-file-size=4M", "--innodb-buffer-pool-size=8M",
                    "--innodb-data-file-path=ibdata1:4M:autoextend")

    def __init__(self, template_datadir: Path, *extra_args: str):
        super().__init__()
        self.datadir = self.directory / "data"
        self.extra_args = list(extra_args)
        shutil.copytree(template_datadir, self.datadir)

    def command(self) -> list[str]:
        return ["mariadbd", "--no-defaults", f"--datadir={self.datadir}", "--user=root",
                f"--port={self.port}", f"--bind-address={LOOPBACK}",
                f"--socket={self.directory / 'mariadb.sock'}", f"--pid-file={self.directory / 'mariadb.pid'}",
                "--skip-name-resolve", "--skip-log-bin", *self.SMALL_INNODB, *self.extra_args]

    def is_ready(self) -> bool:
        import pymysql

        try:
            pymysql.connect(host=LOOPBACK, port=self.port, user="root", connect_timeout=1,
                            read_timeout=1, ssl_disabled=True).close()
            return True
        except pymysql.err.MySQLError:
            return False

    def aborted_clients(self) -> int:
        """Return the server's Aborted_clients: connections dropped without COM_QUIT."""
        import pymysql

        connection = pymysql.connect(host=LOOPBACK, port=self.port, user="root")
        try:
            with connection.cursor() as cursor:
                cursor.execute("SHOW GLOBAL STATUS LIKE 'Aborted_clients'")
                return int(cursor.fetchone()[1])
        finally:
            connection.close()


def make_postgres_datadir(password: str) -> Path:
    """Initialize a PostgreSQL cluster whose user `postgres` logs in with `password` (SCRAM).

    The cluster is made in a new directory under the system temporary directory, because the
    postgres user cannot enter pytest's (owned by root, mode 0700). The caller deletes the parent
    of the returned data directory.
    """
    directory = Path(tempfile.mkdtemp(prefix="dashapp-postgres-template-"))
    datadir = directory / "data"
    password_file = directory / "password"
    password_file.write_text(password + "\n")
    _give_to_postgres_user(directory)
    subprocess.run(
        ["initdb", "-D", str(datadir), "-U", "postgres", "--auth=scram-sha-256",
         f"--pwfile={password_file}", "--no-sync"],
        check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        timeout=120, **_postgres_user_arguments(),
    )
    password_file.unlink()
    return datadir


class PostgresServer(ServerProcess):
    """A throwaway postgres on a copy of a cluster made by make_postgres_datadir."""

    name = "postgres"

    def __init__(self, template_datadir: Path, tls_files: dict[str, Path] | None = None):
        super().__init__()
        self.datadir = self.directory / "data"
        shutil.copytree(template_datadir, self.datadir)
        self.tls_arguments: list[str] = []
        if tls_files is not None:
            # postgres reads the key only if its owner alone may read it.
            cert, key = self.directory / "server.pem", self.directory / "server.key"
            shutil.copyfile(tls_files["cert"], cert)
            shutil.copyfile(tls_files["key"], key)
            key.chmod(0o600)
            self.tls_arguments = ["-c", "ssl=on", "-c", f"ssl_cert_file={cert}", "-c", f"ssl_key_file={key}"]
        _give_to_postgres_user(self.directory)

    def command(self) -> list[str]:
        return ["postgres", "-D", str(self.datadir), "-p", str(self.port), "-k", str(self.directory),
                "-c", f"listen_addresses={LOOPBACK}", "-c", "fsync=off", *self.tls_arguments]

    def popen_arguments(self) -> dict:
        return _postgres_user_arguments()

    def is_ready(self) -> bool:
        from psycopg import pq

        # PQping tells "accepting connections" apart from "starting up" without logging in.
        conninfo = f"host={LOOPBACK} port={self.port} dbname=postgres connect_timeout=2"
        return pq.PGconn.ping(conninfo.encode()) == pq.Ping.OK

    def send_signal(self, signum: int) -> None:
        """Signal the postmaster; SIGSTOP, SIGCONT and SIGKILL also reach every backend.

        Backends run in sessions of their own, so a process group signal would miss them.
        SIGTERM becomes SIGINT, the fast shutdown: on SIGTERM postgres waits for its clients.
        """
        if signum == signal.SIGTERM:
            os.kill(self.process.pid, signal.SIGINT)
            return
        for pid in [self.process.pid, *_descendants(self.process.pid)]:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass


def _postgres_user_arguments() -> dict:
    # initdb and postgres refuse to run as root.
    return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}


def _give_to_postgres_user(directory: Path) -> None:
    if os.geteuid() != 0:
        return
    shutil.chown(directory, "postgres", "postgres")
    for path in directory.rglob("*"):
        shutil.chown(path, "postgres", "postgres")


def _descendants(pid: int) -> list[int]:
    """Return the process ids below `pid`, read from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name in brackets may hold spaces; the parent id follows its closing bracket.
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, child_parent in parents.items() if child_parent == parent]
        found.extend(children)
        frontier.extend(children)
    return found


class SilentListener:
    """Accepts TCP connections and never sends a byte: a server that hangs after accept."""

    def __init__(self):
        self._server = socket.socket()
        self._server.bind((LOOPBACK, 0))
        self._server.listen(64)
        self.port = self._server.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="silent-listener", daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                connection, _address = self._server.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def __enter__(self) -> "SilentListener":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        # shutdown() wakes the thread blocked in accept(); close() alone would not.
        try:
            self._server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._server.close()
        self._thread.join(5)
        for connection in self.accepted:
            connection.close()


class FullBacklogListener:
    """A port where TCP connects hang: it listens, never accepts, and its queue is full.

    Linux drops a SYN when the accept queue is full, so a connect waits without an answer,
    as with a firewall that drops packets.
    """

    def __init__(self):
        self._server = socket.socket()
        self._server.bind((LOOPBACK, 0))
        self._server.listen(0)
        self.port = self._server.getsockname()[1]
        self._filler = socket.create_connection((LOOPBACK, self.port), timeout=1)

    def __enter__(self) -> "FullBacklogListener":
        return self

    def __exit__(self, *exc_info) -> None:
        self._filler.close()
        self._server.close()


class RefusingPort:
    """A port that refuses connections: bound, so nobody else takes it, but not listening."""

    def __init__(self):
        self._socket = socket.socket()
        self._socket.bind((LOOPBACK, 0))
        self.port = self._socket.getsockname()[1]

    def __enter__(self) -> "RefusingPort":
        return self

    def __exit__(self, *exc_info) -> None:
        self._socket.close()


def make_tls_files(directory: Path) -> dict[str, Path]:
    """Write a private CA and a server certificate for IP 127.0.0.1 signed by it.

    Returns the paths under the keys ca, cert and key.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    validity = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dashapp test CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(validity[0]).not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)]))
        .issuer_name(ca_name).public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0]).not_valid_after(validity[1])
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    paths = {"ca": directory / "ca.pem", "cert": directory / "server.pem", "key": directory / "server.key"}
    paths["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


def _all_threads_stopped(pid: int) -> bool:
    """Tell whether every thread of a process is stopped (state T in /proc/PID/task/*/stat)."""
    try:
        states = [(task / "stat").read_text().rsplit(")", 1)[1].split()[0]
                  for task in Path(f"/proc/{pid}/task").iterdir()]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return bool(states) and all(state in ("T", "t") for state in states)
