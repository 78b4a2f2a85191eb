"""The web dashboard: one page (``static/index.html``) and its scripts, served by the API's
own process. It is a client of the public API only (fetch and Server-Sent Events), see
docs/DASHBOARD.md."""

from app.dashboard.routes import router

__all__ = ["router"]
