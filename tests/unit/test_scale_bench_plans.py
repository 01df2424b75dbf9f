"""bench/scale.py's plans as the docs show them: each node with its actual rows and time, its conditions, no cost
estimates or buffer lines, cut to a readable length."""

from __future__ import annotations

from bench.scale import PLAN_LINES, Measured, Plan, compact_plan, report

EXPLAINED = [
    "Finalize GroupAggregate  (cost=8065.73..8078.03 rows=45 width=93) (actual time=151.724..163.835 rows=18 loops=1)",
    "  Group Key: (COALESCE(so.kind, 'unknown'::character varying)), so.status",
    "  Buffers: shared hit=4492",
    "  ->  Gather Merge  (cost=8065.73..8077.10 rows=90 width=93) (actual time=151.7..163.8 rows=54 loops=1)",
    "        Workers Planned: 2",
    "        Workers Launched: 2",
    "        ->  Parallel Seq Scan on source_objects so  (cost=0.00..3666.33 rows=45833 width=50) "
    "(actual time=0.010..12.265 rows=36667 loops=3)",
    "              Filter: (superseded_at IS NULL)",
    "              Rows Removed by Filter: 0",
    "        ->  Index Scan using pages_pkey on pages  (cost=0.29..8.31 rows=1 width=4) (never executed)",
    "Planning Time: 1.011 ms",
    "Execution Time: 163.900 ms",
]


def test_a_plan_keeps_nodes_with_actual_rows_and_time_and_their_conditions() -> None:
    assert compact_plan(EXPLAINED) == [
        "Finalize GroupAggregate (rows=18, 163.8 ms)",
        "  Group Key: (COALESCE(so.kind, 'unknown'::character varying)), so.status",
        "  ->  Gather Merge (rows=54, 163.8 ms)",
        "        ->  Parallel Seq Scan on source_objects so (rows=36667x3, 12.3 ms)",
        "              Filter: (superseded_at IS NULL)",
        "        ->  Index Scan using pages_pkey on pages (never executed)",
    ]


def test_a_long_plan_is_cut_and_says_how_much_was_left_out() -> None:
    node = "  ->  Index Scan using ix on t  (cost=0.29..8.31 rows=1 width=4) (actual time=0.01..0.02 rows=1 loops=1)"
    lines = compact_plan([node] * (PLAN_LINES + 5) + ["  Index Cond: (" + "x" * 300 + ")"])
    assert len(lines) == PLAN_LINES
    assert lines[-1] == "   ... 7 more plan lines"
    assert all(len(line) <= 110 for line in lines)


def test_the_report_shows_each_querys_slowest_plan_and_its_sequential_scans() -> None:
    fast = Plan(0.001, "SELECT 1", "Result", [], ["Result (rows=1, 0.0 ms)"])
    slow = Plan(0.164, "SELECT kind, count(*) FROM source_objects", "Finalize GroupAggregate", ["source_objects"])
    slow.nodes = compact_plan(EXPLAINED)
    text = "\n".join(report([Measured("status", [0.5, 0.4, 0.6], "objects: 3", True, [fast, slow])], "title"))
    assert "status: median 0.500 s; 2 distinct statements, the slowest 164.0 ms; SEQ SCAN of source_objects" in text
    assert "\n            ->  Parallel Seq Scan on source_objects so (rows=36667x3, 12.3 ms)\n" in text  # indented
    assert "Buffers" not in text and "cost=" not in text
