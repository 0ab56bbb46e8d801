"""roiml: the predictive-analytics engine of a real-estate customer-engagement platform."""

from roiml.settings import Settings, get_settings

__all__ = ["Settings", "get_settings"]
__version__ = "0.1.0"
