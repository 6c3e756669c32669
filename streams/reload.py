"""Hot reload of rule files in a running worker: new rules within seconds, broken ones refused.

The files are polled (inode, mtime, size) every couple of seconds rather than watched with
inotify, which needs no extra dependency and works on network and container volumes alike;
SIGHUP asks for a reload at once. The inode is what catches a Kubernetes ConfigMap update: the
kubelet writes new files into a new folder and swaps a `..data` symlink to it, so a rule file's
path then leads to another file, which may well have the same size and modification time.
A file that fails to load is refused with one log line naming every problem, and the last good
rules keep running; it is tried again when it changes again.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from rules.errors import ConfigError
from rules.load import RuleSet, load_paths

log = logging.getLogger(__name__)

Stamp = tuple[tuple[str, int, int, int], ...]


class RulesUser(Protocol):
    """Anything that runs rules and takes new ones (a pipeline, a worker's processor)."""

    rules: RuleSet


class RuleReloader:
    """Swaps the rules of every pipeline when the rule files change (or on `reload()`)."""

    def __init__(
        self, paths: Sequence[Path], pipelines: Sequence[RulesUser], interval: float = 2.0
    ) -> None:
        self.paths = list(paths)
        self.pipelines = list(pipelines)
        self.interval = interval
        self._stamp = stamp(self.paths)
        self._tasks: set[asyncio.Task[bool]] = set()

    def poll(self) -> bool:
        """Reload if any file changed since the last look; True when new rules now run."""
        return self.changed() and self.reload()

    def changed(self) -> bool:
        current = stamp(self.paths)
        if current == self._stamp:
            return False
        self._stamp = current
        return True

    def reload(self) -> bool:
        rules = self.load()
        if rules is not None:
            self.swap(rules)
        return rules is not None

    def load(self) -> RuleSet | None:
        """The rules in the files now, or None (logged) when they do not load."""
        try:
            rules = load_paths(self.paths)
        except ConfigError as exc:
            problems = "; ".join(str(p) for p in exc.problems)
            log.error("rules reload refused, %d rule(s) keep running: %s", self.running, problems)
            return None
        log.info("rules reloaded: %d rule(s) from %s", len(rules), [str(p) for p in self.paths])
        return rules

    async def reload_async(self) -> bool:
        # Parsing thousands of rules takes seconds; in a thread the agents keep going meanwhile.
        # The swap itself happens on the loop, between two events.
        rules = await asyncio.to_thread(self.load)
        if rules is not None:
            self.swap(rules)
        return rules is not None

    def swap(self, rules: RuleSet) -> None:
        # One assignment per pipeline: an event being processed finishes with the rules it
        # started with, the next one sees the new set (the agents share one event loop).
        for pipeline in self.pipelines:
            pipeline.rules = rules

    def _on_hup(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload_async())
        self._tasks.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._tasks.discard)

    @property
    def running(self) -> int:
        return len(self.pipelines[0].rules) if self.pipelines else 0

    async def watch(self) -> None:
        """Poll until cancelled; SIGHUP reloads at once where the platform has it. (No
        parameters: Faust's `app.task` passes the app to a task that takes one.)"""
        loop = asyncio.get_running_loop()
        hup = getattr(signal, "SIGHUP", None)
        if hup is not None:
            loop.add_signal_handler(hup, self._on_hup)
        try:
            while True:
                await asyncio.sleep(self.interval)
                if self.changed():
                    await self.reload_async()
        finally:
            if hup is not None:
                loop.remove_signal_handler(hup)


def stamp(paths: Sequence[Path]) -> Stamp:
    """(file, inode, mtime, size) of every rule file, folders expanded as `load_paths` does;
    symlinks followed (a ConfigMap's keys are symlinks through its `..data` symlink)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted([*path.glob("*.yaml"), *path.glob("*.yml")]))
        else:
            files.append(path)
    found = []
    for file in files:
        try:
            info = file.stat()
        except OSError:
            found.append((str(file), -1, -1, -1))  # a missing file is a change too
            continue
        found.append((str(file), info.st_ino, info.st_mtime_ns, info.st_size))
    return tuple(found)
