import sys

import pytest

from genreg.allocator import keep_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_glibc_accepts_the_settings() -> None:
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # idempotent: applied once per process
