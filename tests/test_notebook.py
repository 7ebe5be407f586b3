"""Runs examples/notebook.ipynb and examples/asyncio_notebook.ipynb in a real ipykernel:
a server serving its own page to a real Chromium, and a server and a client talking inside
the kernel, with their handlers on the kernel's asyncio loop, in the QML style and with
top-level await; and checks under which cell handlers' output appears."""

from __future__ import annotations

import http.client
import queue
import sys
import threading
from pathlib import Path
from typing import Any

import nbformat
import pytest
from browser import Browser
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from conftest import TIMEOUT, free_port, wait_until

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "notebook.ipynb"
ASYNCIO_NOTEBOOK = NOTEBOOK.with_name("asyncio_notebook.ipynb")


def kernel_manager() -> KernelManager:
    """A manager for the "python3" kernel running this interpreter, whatever kernelspecs are installed.

    With no kernel directories to search, jupyter_client falls back to
    ipykernel's native kernelspec, whose command is ``sys.executable``: the
    kernel then runs in this virtualenv, where wsbind is installed, even if a
    user-wide "python3" kernelspec points at another Python.
    """
    specs = KernelSpecManager(kernel_dirs=[], ensure_native_kernel=True)
    km = KernelManager(kernel_name="python3", kernel_spec_manager=specs)
    assert km.kernel_spec is not None
    assert km.kernel_spec.argv[0] == sys.executable, km.kernel_spec.argv
    return km


def execute(path: Path) -> str:
    """Runs every cell of the notebook at ``path`` in a fresh kernel; returns what they printed."""
    nb = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), "outputs stored"
    client = NotebookClient(
        nb,
        km=kernel_manager(),
        timeout=60,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    # Raises CellExecutionError, with the cell and its traceback, if any cell raises.
    client.execute()
    return "".join(
        output.get("text", "") for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs
    )


def answers(port: int) -> bool:
    """Whether something answers HTTP on ``port``."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False


def test_notebook_serves_its_page_to_a_browser(monkeypatch: pytest.MonkeyPatch) -> None:
    """The notebook's server, on its fixed port (a free one here), serves the page that the
    notebook shows in an IFrame; Chromium plays the IFrame's part."""
    port = free_port()
    # The kernel inherits it: another run of the suite may hold the notebook's usual port.
    monkeypatch.setenv("WSBIND_NOTEBOOK_PORT", str(port))
    done: queue.Queue[str | BaseException] = queue.Queue()

    def run() -> None:
        try:
            done.put(execute(NOTEBOOK))
        except BaseException as e:
            done.put(e)

    threading.Thread(target=run, daemon=True).start()
    wait_until(lambda: answers(port) or not done.empty(), timeout=60, what="the notebook's server")
    browser = Browser()
    try:
        page = browser.open(f"http://127.0.0.1:{port}/")
        lines = "[...document.querySelectorAll('#log li')].map((li) => li.textContent)"
        shown = page.wait_for(
            f"{lines}.includes('Hello from the notebook!') && {lines}", what="the notebook's line on the page"
        )
        assert shown[:2] == ["hello from the page", "Hello from the notebook!"], shown
        page.wait_for(f"{lines}.includes('closed: 1001')", what="the page to see the server stop")
    finally:
        browser.close()
    outputs = done.get(timeout=60)
    if isinstance(outputs, BaseException):
        raise outputs
    assert "client_count: 1" in outputs, outputs
    assert "summary: 1 page(s) connected" in outputs, outputs
    assert "page said: ['hello from the page']" in outputs, outputs
    assert "sent to 1 page(s)" in outputs, outputs
    assert "summary: 0 page(s) connected" in outputs, outputs


def test_handler_output_appears_under_the_cell_that_made_the_object() -> None:
    """A handler that prints while another cell runs prints under the cell that made its
    object: its stream message's parent is that cell's request."""
    km = kernel_manager()
    km.start_kernel()
    client = km.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        # The first object of the kernel's loop: its dispatcher starts reading events in
        # this cell's context, which would otherwise be every handler's.
        wait_reply(client, client.execute("from wsbind import WebSocket\nfirst = WebSocket()\n"))
        making = client.execute(
            "from wsbind import WebSocketServer\n"
            "server = WebSocketServer(listen=True, on_client_connected=lambda ws: print('handler ran'))\n"
        )
        wait_reply(client, making)
        running = client.execute(
            "from wsbind import connect\n"
            # Listening binds at once; the wait starts before the client connects.
            "accepted = server.client_connected.wait()\n"
            "async with connect(server.url):\n"
            "    await accepted\n"
            "print('second cell done')\n"
        )
        wait_reply(client, running)
        parents: dict[str, str] = {}
        while len(parents) < 2:
            message = client.get_iopub_msg(timeout=TIMEOUT)
            if message["msg_type"] == "stream":
                parents[message["content"]["text"].strip()] = message["parent_header"].get("msg_id")
        assert parents == {"handler ran": making, "second cell done": running}
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=True)


def wait_reply(client: Any, msg_id: str) -> None:
    """Waits for the reply to ``msg_id``; fails on an error."""
    while True:
        reply = client.get_shell_msg(timeout=60)
        if reply["parent_header"].get("msg_id") == msg_id:
            assert reply["content"]["status"] == "ok", reply["content"]
            return


def test_asyncio_notebook_awaits_at_the_top_level_of_a_kernel() -> None:
    outputs = execute(ASYNCIO_NOTEBOOK)
    assert "reply: You said: Hello Server!" in outputs, outputs
    assert "OPEN True" in outputs, outputs
    assert "ping answered: True" in outputs, outputs
    assert "client closed with 1000" in outputs, outputs
    assert "server closed: True" in outputs, outputs
