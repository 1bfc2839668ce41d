"""FastAPI app: health, registry, people, alerts, tokens, operators' views, websocket endpoint, pages."""

from tracker.api.app import create_app
from tracker.api.context import AppContext

__all__ = ["AppContext", "create_app"]
