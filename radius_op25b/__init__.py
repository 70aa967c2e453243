"""radius-op25b: a RADIUS proxy that attaches Outbound Port 25 Blocking filters per subscriber."""

__version__ = "0.2.0"
