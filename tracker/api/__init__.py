"""FastAPI app: registry, auth, websocket endpoint, pages."""

from tracker.api.app import create_app
from tracker.api.context import AppContext

__all__ = ["AppContext", "create_app"]
