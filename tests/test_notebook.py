"""Runs examples/notebook.ipynb and examples/asyncio_notebook.ipynb in a real ipykernel:
a server and a client talking inside the kernel, with their handlers on the kernel's
asyncio loop, in the QML style and with top-level await."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

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


def test_notebook_runs_in_a_kernel() -> None:
    outputs = execute(NOTEBOOK)
    assert "reply:  ['Hello Client! You said: Hello Server!']" in outputs, outputs
    assert "client closed with 1000" in outputs, outputs


def test_asyncio_notebook_awaits_at_the_top_level_of_a_kernel() -> None:
    outputs = execute(ASYNCIO_NOTEBOOK)
    assert "reply: You said: Hello Server!" in outputs, outputs
    assert "OPEN True" in outputs, outputs
    assert "ping answered: True" in outputs, outputs
    assert "client closed with 1000" in outputs, outputs
    assert "server closed: True" in outputs, outputs
