"""Lead, Buyer and Seller chat bots for GoHighLevel, traced end to end with OpenTelemetry."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ghl-real-estate-ai")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
