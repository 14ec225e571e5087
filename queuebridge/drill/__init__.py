"""The outage drill (``queuebridge drill``): prove that an outage loses nothing."""

from queuebridge.drill.report import DrillReport
from queuebridge.drill.runner import DrillOptions, default_settings, run_drill

__all__ = ["DrillOptions", "DrillReport", "default_settings", "run_drill"]
