"""The table: every figure with its spread, its ratio to pgbench at 8 clients, and its target."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec

from bench.stats import Figure


class Row(msgspec.Struct, kw_only=True):
    key: str
    label: str
    figure: Figure | None
    ratio: float | None = None  # figure.median / pgbench_8 median, for throughputs
    target: str = ""
    met: bool | None = None
    note: str = ""


_PENDING: dict[int, tuple[Row, bool, Callable[[Figure, float | None], bool] | None]] = {}


class Report(msgspec.Struct, kw_only=True):
    command: str
    started_at: str
    seconds: float = 0.0
    machine: dict[str, str]
    postgres: dict[str, str]
    sharing: str
    rows: list[Row] = msgspec.field(default_factory=list)
    settings: dict[str, str] = msgspec.field(default_factory=dict)

    def add(
        self,
        key: str,
        label: str,
        figure: Figure | None,
        *,
        ratio_to_baseline: bool = False,
        target: str = "",
        check: Callable[[Figure, float | None], bool] | None = None,
        note: str = "",
    ) -> Row:
        """Add a row; its ratio and verdict are settled by `finish` once the baseline is in."""
        row = Row(key=key, label=label, figure=figure, target=target, note=note)
        self.rows.append(row)
        _PENDING[id(row)] = (row, ratio_to_baseline, check)
        return row

    def finish(self) -> None:
        base = self.baseline()
        for row, relative, check in _PENDING.values():
            if row.figure is None:
                continue
            if relative and base:
                row.ratio = row.figure.median / base
            if check is not None:
                row.met = check(row.figure, row.ratio)
        _PENDING.clear()

    def baseline(self) -> float | None:
        for row in self.rows:
            if row.key == "pgbench_8" and row.figure is not None:
                return row.figure.median
        return None

    def figure(self, key: str) -> Figure | None:
        for row in self.rows:
            if row.key == key:
                return row.figure
        return None


def _num(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def table(report: Report) -> str:
    """A Markdown table, printed as is and pasted into BENCHMARKS.md."""
    lines = [
        "| measurement | median | spread (min–max) | × pgbench-8 | target | met |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for row in report.rows:
        f = row.figure
        if f is None:
            lines.append(f"| {row.label} | n/a | | | {row.target} | not measured: {row.note} |")
            continue
        median = f"{_num(f.median)} {f.unit}"
        spread = f"{_num(f.low)}–{_num(f.high)}"
        ratio = f"{row.ratio:.2f}×" if row.ratio is not None else ""
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        label = row.label + (f" ({row.note})" if row.note else "")
        lines.append(f"| {label} | {median} | {spread} | {ratio} | {row.target} | {met} |")
    return "\n".join(lines)


def header(report: Report) -> str:
    m = report.machine
    pg = report.postgres
    return "\n".join(
        [
            f"Job Ledger benchmarks — `{report.command}` — started {report.started_at}, "
            f"took {report.seconds:.0f} s",
            f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory']} RAM, Linux {m['kernel']}, "
            f"Python {m['python']}; load average at start {m['load_average_at_start']}",
            f"PostgreSQL {pg.get('server_version', '?')} (embedded, one cluster for every figure): "
            f"fsync={pg.get('fsync')}, synchronous_commit={pg.get('synchronous_commit')}, "
            f"full_page_writes={pg.get('full_page_writes')}, "
            f"wal_sync_method={pg.get('wal_sync_method')}",
            report.sharing,
            "Each figure: median of 3 repetitions, spread = min–max of the 3.",
        ]
    )


def write_json(report: Report, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = report.started_at.replace(":", "").replace("-", "")
    path = directory / f"bench-{stamp}.json"
    data = msgspec.json.format(msgspec.json.encode(report))
    path.write_bytes(data)
    (directory / "latest.json").write_bytes(data)
    return path
