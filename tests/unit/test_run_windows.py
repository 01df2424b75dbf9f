"""Windows sized by work, and where a run's time went: pure logic (tasks/run/windows.py, tasks/run/timing.py, the
report's time line)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from schemas.records import DiscoveryRequest, RunKind, RunSummary
from schemas.settings import load_settings
from storage.blobstore import LocalDirStore
from tasks.run.discovery import list_candidates
from tasks.run.report import stage_lines, stage_table, time_line
from tasks.run.timing import RunClock, covered_seconds
from tasks.run.windows import object_cost, work_windows

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_small_image_costs_one_page_and_a_long_pdf_many() -> None:
    assert object_cost("scans/a.png", 12_000) == 1.0
    assert object_cost("a.pdf", 40_000_000) == 400.0  # guessed from its bytes before its first run
    assert object_cost("a.pdf", 40_000_000, kind="pdf", page_count=12) == 12.0  # an earlier run counted them
    assert object_cost("call.mp3", 10_000) == 1.0
    assert object_cost("call.wav", 0, kind="audio", duration_s=30 * 60) == 60.0  # 2 pages' worth a minute


def test_a_swarm_of_small_images_goes_in_a_few_large_windows() -> None:
    images = [(n, object_cost(f"{n}.png", 12_000)) for n in range(500)]
    settings = load_settings()
    windows = list(work_windows(images, settings.runner.window_size, settings.runner.window_pages))
    assert [len(w) for w in windows] == [64] * 7 + [52]  # was 32 windows of 16
    assert [n for w in windows for n in w] == list(range(500))  # every object once, in listing order


def test_a_long_pdf_travels_in_its_own_window() -> None:
    objects = [(1, 1.0), (2, 1.0), (3, 400.0), (4, 1.0), (5, 1.0)]
    assert list(work_windows(objects, max_objects=256, max_units=128)) == [[1, 2], [3], [4, 5]]


def test_windows_never_exceed_the_object_cap() -> None:
    objects = [(n, 0.5) for n in range(10)]
    assert [len(w) for w in work_windows(objects, max_objects=4, max_units=100)] == [4, 4, 2]


def test_windows_stream_one_at_a_time() -> None:
    taken = 0

    def listing() -> Iterator[tuple[int, float]]:
        nonlocal taken
        for n in range(1_000_000):
            taken += 1
            yield n, 1.0

    first = next(work_windows(listing(), max_objects=256, max_units=10))
    assert first == list(range(10)) and taken == 11  # the 11th object opened the next window; nothing more read


def test_overlapping_spans_count_once() -> None:
    spans = [(_at(0), _at(4)), (_at(2), _at(6)), (_at(10), _at(11)), (_at(10.5), _at(10.7))]
    assert covered_seconds(spans) == 7.0
    assert covered_seconds([]) == 0.0


def test_orchestration_is_the_wall_time_no_stage_worked() -> None:
    clock = RunClock(_at(0))
    clock.add([(_at(1), _at(3)), (_at(5), _at(9))], {"classify": 2.0})
    clock.add([(_at(2), _at(4))], {"classify": 0.5})
    assert clock.orchestration_s(_at(10)) == 10 - (3 + 4)
    assert clock.prepare_s == {"classify": 2.5}


def _summary(**fields: Any) -> RunSummary:
    return RunSummary(
        run_id="r",
        kind=RunKind.NIGHTLY,
        status="completed",
        started_at=_at(0),
        finished_at=_at(20),
        listed=500,
        planned=500,
        processed=500,
        by_status={"done": 500},
        by_kind={},
        failures=(),
        **fields,
    )


def test_the_run_summary_shows_orchestration_beside_the_stages() -> None:
    summary = _summary(orchestration_s=3.25, planning_s=1.5, preparation_s={"classify": 6.0})
    line = stage_lines(summary)[-1]
    assert line == (
        "orchestration 3.25 s outside any stage (task runs, claims, result writes), planning 1.50 s before the first "
        "window (checks, discovery), classify CPU preparation 6.00 s summed over the workers (OCR), of 20.00 s run "
        "wall time"
    )
    assert stage_table(summary)[-1].startswith("Orchestration 3.25 s outside any stage")


def test_no_orchestration_line_where_it_was_not_measured() -> None:
    assert time_line(_summary()) is None
    assert stage_lines(_summary()) == []


def test_overlapping_prefixes_and_a_store_named_twice_list_each_object_once(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for key in ("a/1.png", "a/b/2.png", "3.png"):
        (tmp_path / key).write_bytes(b"x")
    same = [LocalDirStore(tmp_path), LocalDirStore(tmp_path)]
    overlapping = DiscoveryRequest(sources=(str(tmp_path),), prefixes=("a/", "a/b/"))
    assert [b.key for b in list_candidates(same[:1], overlapping)] == ["a/1.png", "a/b/2.png"]
    plain = DiscoveryRequest(sources=(str(tmp_path),))
    assert [b.key for b in list_candidates(same, plain)] == ["3.png", "a/1.png", "a/b/2.png"]
    assert [b.key for b in list_candidates(same[:1], plain)] == ["3.png", "a/1.png", "a/b/2.png"]
