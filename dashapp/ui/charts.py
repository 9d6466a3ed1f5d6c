"""The two live charts of the overview page: status share (donut) and status by type (stacked bar).

The browser draws both from each `status_summary_update` (assets/overview.js), so the server only
places the graphs and hands over the colors and the order of the statuses.
"""

from __future__ import annotations

from dash import dcc

from dashapp.model import Status

# The order in which statuses appear in legends, totals and stacks: problems first.
STATUS_ORDER = [Status.ABNORMAL.value, Status.DEGRADED.value, Status.PENDING.value,
                Status.MAINTENANCE.value, Status.RUNNING.value]

# Bootstrap 5.3 palette, so charts, badges and totals show a status in the same color.
STATUS_COLORS = {
    Status.RUNNING.value: "#198754",
    Status.ABNORMAL.value: "#dc3545",
    Status.PENDING.value: "#6c757d",
    Status.MAINTENANCE.value: "#0d6efd",
    Status.DEGRADED.value: "#fd7e14",
}

CHART_IDS = {"status_share": "chart-status-share", "by_type": "chart-by-type"}

_GRAPH_CONFIG = {"displayModeBar": False, "responsive": True}

# A responsive graph fills its container, which has no height of its own: without one, the
# plot overflows onto whatever follows it.
_GRAPH_STYLE = {"height": "17rem"}


def status_share_graph() -> dcc.Graph:
    return dcc.Graph(id=CHART_IDS["status_share"], className="overview-chart", config=_GRAPH_CONFIG,
                     style=_GRAPH_STYLE)


def status_by_type_graph() -> dcc.Graph:
    return dcc.Graph(id=CHART_IDS["by_type"], className="overview-chart", config=_GRAPH_CONFIG,
                     style=_GRAPH_STYLE)
