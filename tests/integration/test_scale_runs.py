"""bench/scale.py's parts (a) and (c) at a tiny size, so the bench code cannot rot: small objects through the real
`docflow run` from SeaweedFS into PostgreSQL at two inbox sizes, and one inbox run in-process and fanned out in
shards on a `docflow stack`. Counts and outcomes are asserted, never times."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import scale_fanout, scale_objects
from tests.services import PostgresCluster, SeaweedS3


def test_small_objects_end_to_end_at_two_sizes(postgres: PostgresCluster, s3_env: SeaweedS3, tmp_path: Path) -> None:
    lines: list[str] = []
    results = scale_objects.measure(postgres, s3_env, [20, 50], tmp_path, bucket="docflow-scale-test", out=lines.append)
    assert [r.objects for r in results] == [20, 50]
    for result in results:
        assert result.run.objects == result.objects  # `docflow run` processed every uploaded object
        assert sum(result.statuses.values()) == result.objects and "pending" not in result.statuses
        assert result.run.peak_rss_mb > 0 and result.discovery_s > 0 and result.discovery_peak_mb > 0
        assert result.planning_s is not None and result.run_per_s  # the run printed its planning and wall time
    values = scale_objects.figures(results)
    assert {"rate_ratio_largest_to_smallest", "rss_ratio_largest_to_smallest", "peak_rss_mb_50"} <= set(values)
    assert any("docflow run" in line for line in lines)


@pytest.mark.stack
def test_fan_out_in_shards_against_in_process_on_one_inbox() -> None:
    lines: list[str] = []
    measured, values = scale_fanout.run(objects=12, shards=4, workers=2, out=lines.append)
    runs = measured["runs"]
    assert runs["in_process"].statuses == runs["fan_out"].statuses  # the same images, the same outcomes
    assert sum(runs["fan_out"].statuses.values()) == 12 and "pending" not in runs["fan_out"].statuses
    assert runs["in_process"].shards == [] and len(runs["fan_out"].shards) == 4
    for shard in runs["fan_out"].shards:
        assert set(shard.seconds) == set(scale_fanout.PHASES)
        assert shard.seconds["work"] > 0
    assert values["shards"] == "4" and "shard_own_s_median" in values and "fan_out_over_in_process" in values
