"""The Autobahn|Testsuite judges wsbind's conformance to RFC 6455 and RFC 7692:
every case, compression included, as a server (its fuzzingclient against
examples/echo_server.py) and as a client (tests/autobahn/client.py against its
fuzzingserver). A case passes when it is OK or INFORMATIONAL; NON-STRICT fails.

The testsuite runs on Python 2.7 (`make autobahn` installs it); WSTEST names
its `wstest` if it is not where `make autobahn` puts it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
PYENV_WSTEST = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions/2.7.18/bin/wstest"
WSTEST = Path(os.environ.get("WSTEST", PYENV_WSTEST))
AGENT = "wsbind"
# The whole run of one role: about nine minutes here, both roles at once.
RUN_TIMEOUT = 1200
# Which cases run: all of them, unless a developer names some (AUTOBAHN_CASES="3.*,5.15").
CASES = os.environ.get("AUTOBAHN_CASES", "*").split(",")


def behaviours(index: Path) -> dict[str, tuple[str, str]]:
    """Each case's (behaviour, closing behaviour) from a report index."""
    cases = json.loads(index.read_text())[AGENT]
    return {case: (result["behavior"], result["behaviorClose"]) for case, result in cases.items()}


def failures(results: dict[str, tuple[str, str]]) -> list[str]:
    failed = []
    for case, (behaviour, closing) in sorted(results.items()):
        if behaviour not in ("OK", "INFORMATIONAL") or closing not in ("OK", "INFORMATIONAL"):
            failed.append(f"{case}: {behaviour}, close {closing}")
    return failed


def wstest(mode: str, spec: dict[str, object], cwd: Path) -> subprocess.Popen[bytes]:
    assert WSTEST.exists(), f"{WSTEST} is missing: run `make autobahn`"
    path = cwd / "spec.json"
    path.write_text(json.dumps(spec))
    return subprocess.Popen(
        [str(WSTEST), "-m", mode, "-s", str(path)],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def accepts_connections(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def run_as_server(workdir: Path) -> dict[str, tuple[str, str]]:
    """The fuzzingclient against examples/echo_server.py; each case's result."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "echo_server.py"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: accepts_connections(port), what="the echo server to listen")
        spec = {
            "outdir": str(workdir / "reports"),
            "servers": [{"agent": AGENT, "url": f"ws://127.0.0.1:{port}"}],
            "cases": CASES,
            "exclude-cases": [],
            "exclude-agent-cases": {},
        }
        run = wstest("fuzzingclient", spec, workdir)
        _, errors = run.communicate(timeout=RUN_TIMEOUT)
        assert run.returncode == 0, errors.decode(errors="replace")
    finally:
        server.terminate()
        server.wait(10)
    return behaviours(workdir / "reports" / "index.json")


def run_as_client(workdir: Path) -> dict[str, tuple[str, str]]:
    """tests/autobahn/client.py against the fuzzingserver; each case's result."""
    port = free_port()
    spec = {
        "url": f"ws://127.0.0.1:{port}",
        "outdir": str(workdir / "reports"),
        "cases": CASES,
        "exclude-cases": [],
        "exclude-agent-cases": {},
    }
    fuzzingserver = wstest("fuzzingserver", spec, workdir)
    try:
        wait_until(lambda: accepts_connections(port), what="the fuzzingserver to listen")
        client = subprocess.run(
            [sys.executable, str(ROOT / "tests" / "autobahn" / "client.py"), f"ws://127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
        assert client.returncode == 0, client.stderr
    finally:
        fuzzingserver.terminate()
        fuzzingserver.wait(10)
    return behaviours(workdir / "reports" / "index.json")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future[dict[str, tuple[str, str]]]]]:
    """Both roles at once: each keeps about one core busy, most of it the testsuite's own."""
    with ThreadPoolExecutor(2) as pool:
        yield {
            "server": pool.submit(run_as_server, tmp_path_factory.mktemp("server")),
            "client": pool.submit(run_as_client, tmp_path_factory.mktemp("client")),
        }


@pytest.mark.timeout(RUN_TIMEOUT + 60)
@pytest.mark.parametrize("role", ["server", "client"])
def test_every_case_passes(runs: dict[str, Future[dict[str, tuple[str, str]]]], role: str) -> None:
    results = runs[role].result(timeout=RUN_TIMEOUT)
    if CASES == ["*"]:
        assert len(results) == 517, len(results)
    assert failures(results) == []
