"""Monitoring: drift, realised performance, alerts and the dashboard over ``ml_monitoring``."""
