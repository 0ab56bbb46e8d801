"""The monitoring dashboard: SQL aggregates of the prediction log, ``ml_monitoring``, feature
statistics and pipeline runs, drawn as server-rendered SVG. Its HTTP face (``/api/ml/dashboard``)
is the API's (serving/routes/dashboard.py)."""

from roiml.monitoring.dashboard.queries import load_dashboard
from roiml.monitoring.dashboard.render import render_page
from roiml.monitoring.dashboard.schemas import DashboardData

__all__ = [
    "DashboardData",
    "load_dashboard",
    "render_page",
]
