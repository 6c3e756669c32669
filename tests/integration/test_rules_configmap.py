"""Hot reload of a rules folder mounted from a Kubernetes ConfigMap, in the real worker.

The kubelet does not rewrite a ConfigMap's files in place (its AtomicWriter): the files live in
a timestamped hidden folder, `..data` is a symlink to it and each key is a symlink through
`..data`. An update writes a new timestamped folder, points a new symlink at it and renames it
over `..data` (one atomic swap), adds or removes the keys' symlinks, and deletes the old folder.
This test lays a folder out exactly so, on disk, and updates it the same way."""

from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from integration.conftest import WorkerFactory
from integration.support import Services, read_topic
from integration.test_rules_reload import RULE, order, send, wait_for_log, wait_until_counted

pytestmark = pytest.mark.integration

EXTRA = """\
rules:
  - name: orders-day
    kpi: orders
    by: [store]
    window: 1d
    thresholds:
      warning: "> 1000"
"""


class ConfigMapVolume:
    """A folder as the kubelet keeps a ConfigMap volume (pkg/volume/util/atomic_writer.go)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.updates = 0

    def write(self, files: dict[str, str], *, keep_mtime: bool = False) -> None:
        """Publish `files` as the volume's whole content. With `keep_mtime`, each file that
        exists already keeps its old modification time (as on a file system whose clock ticks
        coarser than two updates, or a copy that preserves times): only the swap tells."""
        self.updates += 1
        stamp = datetime.now(UTC).strftime("%Y_%m_%d_%H_%M_%S")
        new = self.root / f"..{stamp}.{os.getpid()}{self.updates:06d}"
        new.mkdir()
        data = self.root / "..data"
        old = data.resolve() if data.is_symlink() else None
        for name, text in files.items():
            (new / name).write_text(text, "utf-8")
            if keep_mtime and old is not None and (old / name).exists():
                before = (old / name).stat()
                os.utime(new / name, ns=(before.st_atime_ns, before.st_mtime_ns))
        staged = self.root / "..data_tmp"
        staged.symlink_to(new.name)
        staged.rename(data)  # the atomic swap
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")
        for link in self.root.iterdir():
            if link.is_symlink() and not link.name.startswith("..") and link.name not in files:
                link.unlink()
        if old is not None:
            shutil.rmtree(old)


async def test_rules_reload_through_a_configmap_swap(
    services: Services, prefix: str, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    volume = ConfigMapVolume(tmp_path / "rules")
    # Same length on purpose: the second version differs from the first only by its content.
    volume.write({"gmv.yaml": RULE.format(threshold="1000000")})
    worker = worker_factory(prefix, rules=volume.root)
    await send(services, prefix, order("s1", 0))
    worker.start()
    wait_until_counted(worker, "s1")  # no breach at 1,000,000 USD

    started = time.monotonic()
    volume.write({"gmv.yaml": RULE.format(threshold="50.0000")}, keep_mtime=True)
    wait_for_log(worker, "rules reloaded: 1 rule(s)")
    took = time.monotonic() - started
    await send(services, prefix, order("s2", 1))
    alerts = await read_topic(
        services.kafka_bootstrap, prefix + "alerts", until=lambda got: len(got) >= 1
    )
    assert [a["labels"]["store"] for a in alerts] == ["s2"]
    assert alerts[0]["threshold"].startswith("> 50")

    # A key added to the ConfigMap: a new symlink next to the others.
    volume.write({"gmv.yaml": RULE.format(threshold="50.0000"), "orders.yaml": EXTRA})
    wait_for_log(worker, "rules reloaded: 2 rule(s)")
    assert sorted(p.name for p in volume.root.iterdir() if not p.name.startswith("..")) == [
        "gmv.yaml",
        "orders.yaml",
    ]
    print(f"\nConfigMap swap seen and the rules reloaded in {took:.1f} s")
