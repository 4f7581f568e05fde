"""The web UI: the home feed page and the operations console (see ``console.py``)."""

from homefeed.serving.ui.console import mount_console, router

__all__ = ["mount_console", "router"]
