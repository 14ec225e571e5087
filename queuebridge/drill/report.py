"""What a drill measured, and how it is shown."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DrillReport"]


@dataclass(slots=True)
class DrillReport:
    """Every job id counted from enqueue to execution."""

    fault: str
    primary: str
    alternate: str
    enqueued: int = 0
    executed: int = 0
    lost: int = 0
    duplicated: int = 0
    """Job ids that ran more than once (beyond the first run)."""
    duplicates_skipped: int = 0
    """Repeat deliveries the worker's dedup caught and acked without running."""
    spooled: int = 0
    enqueue_errors: int = 0
    failover_seconds: float | None = None
    """From the fault to the first job accepted elsewhere."""
    failback_seconds: float | None = None
    """From the primary's return to the router's failback to it."""
    worst_enqueue_ms: float = 0.0
    p99_enqueue_ms: float = 0.0
    duration_seconds: float = 0.0
    by_backend: dict[str, int] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    lost_ids: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Nothing lost, nothing refused, and every job ran."""
        return self.lost == 0 and self.enqueue_errors == 0 and self.executed == self.enqueued

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``queuebridge drill --json``)."""
        return {**dataclasses.asdict(self), "passed": self.passed}

    def render(self) -> str:
        """The summary table printed at the end of a drill."""
        def seconds(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.2f} s"

        rows = [
            ("fault injected", f"{self.fault} on {self.primary!r}"),
            ("jobs enqueued", str(self.enqueued)),
            ("jobs executed", str(self.executed)),
            ("jobs lost", str(self.lost)),
            ("jobs duplicated", str(self.duplicated)),
            ("duplicates skipped", f"{self.duplicates_skipped} (caught by dedup, not run)"),
            ("enqueue errors", str(self.enqueue_errors)),
            ("jobs spooled", str(self.spooled)),
            ("accepted by", ", ".join(f"{k}={v}" for k, v in sorted(self.by_backend.items()))),
            ("time to fail over", seconds(self.failover_seconds)),
            ("time to fail back", seconds(self.failback_seconds)),
            ("worst enqueue latency", f"{self.worst_enqueue_ms:.1f} ms"),
            ("p99 enqueue latency", f"{self.p99_enqueue_ms:.1f} ms"),
            ("drill duration", seconds(self.duration_seconds)),
            ("result", "PASS: no job lost" if self.passed else "FAIL"),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"  {name:<{width}}  {value}" for name, value in rows]
        if self.lost_ids:
            lines.append(f"  lost ids (first {len(self.lost_ids)}): {', '.join(self.lost_ids)}")
        if self.events:
            lines.append("  transitions:")
            lines.extend(f"    {event}" for event in self.events)
        return "\n".join(["queuebridge outage drill", *lines])
