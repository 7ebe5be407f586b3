"""glibc's malloc after ``import wsbind``: the memory of freed messages stays for the next ones
(src/py/malloc.rs, ``MALLOC_MAP_FROM`` in src/config.rs)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

# Batches of 64 messages of 64 KiB (one read burst's worth of `bytes`), each batch made, then
# freed; prints the page faults of twenty batches after the first.
CHURN = """
import resource
import sys

if sys.argv[1] == "import":
    import wsbind  # noqa: F401

def batch():
    held = [bytes(65536) for _ in range(64)]
    del held

batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    batch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True, check=True)
    return int(done.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="only glibc gives a heap's top back at 128 KiB")
def test_freed_messages_memory_is_used_again_not_faulted_in_again() -> None:
    """Without wsbind, glibc gives each freed batch back to the kernel and the next batch faults its
    4 MiB in again (1,024 pages a batch); after ``import wsbind`` the freed batch stays in the heap."""
    without = page_faults("plain")
    if without < 20 * 512:
        pytest.skip(f"this allocator kept the freed batches by itself ({without} page faults)")
    assert page_faults("import") < without // 10
