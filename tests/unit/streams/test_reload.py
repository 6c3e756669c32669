"""Hot reload: changed rule files swap the rules of every pipeline; broken ones are refused."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from rules.load import load_paths
from streams.pipeline import Pipeline
from streams.reload import RuleReloader
from streams.state import StateStore

RULE = 'rules:\n  - name: acos-high\n    kpi: acos\n    thresholds: {{warning: "> {0}%"}}\n'


def write(path: Path, text: str, tick: int) -> None:
    path.write_text(text, "utf-8")
    os.utime(path, ns=(tick * 10**9, tick * 10**9))  # mtimes can tie within one test


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, list[Pipeline], RuleReloader]:
    path = tmp_path / "rules.yaml"
    write(path, RULE.format(35), 1)
    rules = load_paths([path])
    pipelines = [Pipeline(StateStore(), rules), Pipeline(StateStore(), rules)]
    return path, pipelines, RuleReloader([path], pipelines)


def threshold(pipeline: Pipeline) -> str:
    return str(pipeline.rules.rules[0].thresholds[0][1])


def test_nothing_changed_nothing_reloaded(setup: tuple[Path, list[Pipeline], RuleReloader]) -> None:
    _, pipelines, reloader = setup
    before = pipelines[0].rules
    assert reloader.poll() is False
    assert pipelines[0].rules is before


def test_a_changed_file_swaps_the_rules_of_every_pipeline(
    setup: tuple[Path, list[Pipeline], RuleReloader],
) -> None:
    path, pipelines, reloader = setup
    write(path, RULE.format(50), 2)
    assert reloader.poll() is True
    assert [threshold(p) for p in pipelines] == ["> 50%", "> 50%"]


def test_a_broken_file_is_refused_with_one_line_and_the_old_rules_run(
    setup: tuple[Path, list[Pipeline], RuleReloader], caplog: pytest.LogCaptureFixture
) -> None:
    path, pipelines, reloader = setup
    write(path, RULE.format(50).replace("kpi: acos", "kpi: acoss"), 2)
    with caplog.at_level(logging.ERROR, logger="streams.reload"):
        assert reloader.poll() is False
    (record,) = caplog.records
    assert record.getMessage().startswith(
        f"rules reload refused, 1 rule(s) keep running: {path}:3: rule 'acos-high': unknown kpi"
    )
    assert [threshold(p) for p in pipelines] == ["> 35%", "> 35%"]
    assert reloader.poll() is False  # not retried until the file changes again
    write(path, RULE.format(60), 3)
    assert reloader.poll() is True
    assert threshold(pipelines[0]) == "> 60%"


def test_a_new_file_in_a_watched_folder_is_loaded(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", RULE.format(35), 1)
    pipeline = Pipeline(StateStore(), load_paths([tmp_path]))
    reloader = RuleReloader([tmp_path], [pipeline])
    write(tmp_path / "b.yaml", RULE.format(40).replace("acos-high", "acos-b"), 2)
    assert reloader.poll() is True
    assert [r.name for r in pipeline.rules.rules] == ["acos-high", "acos-b"]


async def test_sighup_reloads_at_once(setup: tuple[Path, list[Pipeline], RuleReloader]) -> None:
    import asyncio
    import signal

    path, pipelines, _ = setup
    reloader = RuleReloader([path], pipelines, interval=3600)  # only the signal can reload
    task = asyncio.create_task(reloader.watch())
    await asyncio.sleep(0.05)
    path.write_text(RULE.format(70), "utf-8")
    os.kill(os.getpid(), signal.SIGHUP)
    for _ in range(100):
        await asyncio.sleep(0.01)
        if threshold(pipelines[0]) == "> 70%":
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert threshold(pipelines[0]) == "> 70%"


async def test_watch_polls_and_reloads_off_the_loop(
    setup: tuple[Path, list[Pipeline], RuleReloader],
) -> None:
    import asyncio

    path, pipelines, _ = setup
    reloader = RuleReloader([path], pipelines, interval=0.02)
    task = asyncio.create_task(reloader.watch())
    write(path, RULE.format(45), 5)
    for _ in range(200):
        await asyncio.sleep(0.01)
        if threshold(pipelines[1]) == "> 45%":
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [threshold(p) for p in pipelines] == ["> 45%", "> 45%"]


def test_a_configmap_swap_to_a_same_sized_file_of_the_same_mtime_is_seen(tmp_path: Path) -> None:
    """The kubelet's update of a ConfigMap volume: new files in a new folder, then `..data`
    renamed to point at it; the key's path now leads to another file (another inode), even
    when its size and modification time are the old one's."""
    first, second = tmp_path / "..2026_12_02_00_00_00.1", tmp_path / "..2026_12_02_00_00_01.2"
    first.mkdir()
    second.mkdir()
    write(first / "rules.yaml", RULE.format(35), 1)
    write(second / "rules.yaml", RULE.format(50), 1)
    (tmp_path / "..data").symlink_to(first.name)
    (tmp_path / "rules.yaml").symlink_to("..data/rules.yaml")
    pipelines = [Pipeline(StateStore(), load_paths([tmp_path]))]
    reloader = RuleReloader([tmp_path], pipelines)
    staged = tmp_path / "..data_tmp"
    staged.symlink_to(second.name)
    staged.rename(tmp_path / "..data")
    assert reloader.poll() is True
    assert threshold(pipelines[0]) == "> 50%"
