"""A private redis-server on a free loopback port, for the tests of groups across processes.

``make test`` installs Debian's redis-server (``make system-deps``). The
server keeps nothing on disk (``--save "" --appendonly no``), and a test may
stop it and start it again on the same port to play a Redis that goes away.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import trustme

from conftest import free_port, wait_until


class RedisServer:
    """A redis-server that a test runs: ``url`` to attach to it, ``client`` to read its state."""

    def __init__(self, tls: bool = False) -> None:
        self.port = free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="wsbind-redis-"))
        self._proc: subprocess.Popen[bytes] | None = None
        # With tls, the server speaks TLS only (rediss://), with a certificate
        # of a CA made for the test, whose file ``ca_file`` clients trust.
        self.ca_file: Path | None = None
        self._tls_args: list[str] = []
        if tls:
            ca = trustme.CA()
            cert = ca.issue_cert("127.0.0.1")
            self.ca_file = self._dir / "ca.pem"
            ca.cert_pem.write_to_path(str(self.ca_file))
            cert.cert_chain_pems[0].write_to_path(str(self._dir / "cert.pem"))
            cert.private_key_pem.write_to_path(str(self._dir / "key.pem"))
            self._tls_args = ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no",
                              "--tls-cert-file", str(self._dir / "cert.pem"),
                              "--tls-key-file", str(self._dir / "key.pem"),
                              "--tls-ca-cert-file", str(self.ca_file)]  # fmt: skip
        scheme = "rediss" if tls else "redis"
        self.url = f"{scheme}://127.0.0.1:{self.port}/0"
        self.client = redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=5, ssl=tls,
            ssl_ca_certs=None if self.ca_file is None else str(self.ca_file),
        )  # fmt: skip

    def start(self) -> None:
        """Starts the server and returns once it answers PING."""
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.fail("redis-server is missing: run `make system-deps`")
        log = (self._dir / "redis.log").open("a")
        self._proc = subprocess.Popen(
            [executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self._dir), *self._tls_args],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()

        def answers() -> bool:
            assert self._proc is not None and self._proc.poll() is None, self.log()
            try:
                return bool(self.client.ping())
            except redis.ConnectionError:
                return False

        wait_until(answers, what="redis-server to answer PING")

    def stop(self) -> None:
        """Stops the server (its clients see their connections end)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=15)
        self.client.connection_pool.disconnect()

    def log(self) -> str:
        path = self._dir / "redis.log"
        return path.read_text() if path.exists() else ""

    def channels(self) -> set[str]:
        """The channels some client of this server is subscribed to (PUBSUB CHANNELS)."""
        return {c.decode() for c in self.client.pubsub_channels()}

    def subscribers(self, channel: str) -> int:
        """How many clients are subscribed to ``channel`` (PUBSUB NUMSUB)."""
        return int(dict(self.client.pubsub_numsub(channel))[channel.encode()])


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of this test's own, stopped when the test ends."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server._dir, ignore_errors=True)
