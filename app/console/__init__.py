"""The web console at /console: sign-in with an API key, admin and security pages (see routes)."""

from app.console.routes import install_console

__all__ = ["install_console"]
