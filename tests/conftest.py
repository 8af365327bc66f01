"""Suite-wide settings: Hypothesis profiles (CI keeps the whole suite fast); the small_disk fixture."""
import os
import subprocess

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


class SmallDisk:
    """A tmpfs of ``size`` mounted at ``path``: a real file system that really fills up."""

    def __init__(self, path, size):
        self.path = path
        path.mkdir()
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                 capture_output=True, text=True)
        if mounted.returncode != 0:
            pytest.skip(f"SKIPPED LOUDLY: the full-disk test needs to mount a tmpfs (root, or CAP_SYS_ADMIN); "
                        f"mount said: {mounted.stderr.strip()}")

    def grow(self, size):
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)

    def unmount(self):
        subprocess.run(["umount", "--lazy", str(self.path)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    """``small_disk(size)``: a new ``SmallDisk`` under tmp_path, unmounted at teardown; skips the
    test (saying why) where mounting is not allowed."""
    disks = []

    def mount(size):
        disks.append(SmallDisk(tmp_path / f"disk{len(disks)}", size))
        return disks[-1]

    yield mount
    for disk in disks:
        disk.unmount()
