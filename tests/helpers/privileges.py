"""Child processes that file permissions bind, for tests of unreadable and unwritable paths.

Tests may run as root, which reads and writes through ``chmod 000``. A child started with
``preexec_fn=bound_by_permissions`` drops the two capabilities that let root do that
(CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) from its bounding set before it runs the command,
so it stays root in every other way (the same files, the same Python) but obeys the mode
bits. :func:`skip_reason` says when even that is not possible (then the test is skipped).
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def bound_by_permissions() -> None:
    """``preexec_fn``: as root, give up reading and writing past permissions (for the child
    and whatever it runs); as anyone else, nothing to do."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def skip_reason() -> str | None:
    """Why a child cannot be made to obey permissions here (None: it can)."""
    with tempfile.TemporaryDirectory() as tmp:
        locked = Path(tmp) / "locked"
        locked.mkdir()
        locked.chmod(0)
        try:
            done = subprocess.run([sys.executable, "-c", f"import os; os.listdir({str(locked)!r})"],
                                  preexec_fn=bound_by_permissions, capture_output=True,
                                  timeout=60)
        except (OSError, subprocess.SubprocessError) as err:
            return f"cannot start a child without root's permission bypass: {err}"
        finally:
            locked.chmod(0o700)
    if done.returncode == 0:
        return ("a chmod 000 folder stays readable to this test's children (root with "
                "capabilities that cannot be dropped here)")
    return None
