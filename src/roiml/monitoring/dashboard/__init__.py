"""The monitoring dashboard: SQL aggregates of the prediction log, ``ml_monitoring``, feature
statistics and pipeline runs, drawn as server-rendered SVG at ``/api/ml/dashboard``."""

from roiml.monitoring.dashboard.queries import load_dashboard
from roiml.monitoring.dashboard.render import render_page
from roiml.monitoring.dashboard.router import DASHBOARD_PATH, DASHBOARD_SCOPE, dashboard_router
from roiml.monitoring.dashboard.schemas import DashboardData

__all__ = [
    "DASHBOARD_PATH",
    "DASHBOARD_SCOPE",
    "DashboardData",
    "dashboard_router",
    "load_dashboard",
    "render_page",
]
