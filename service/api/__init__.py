"""The HTTP layer: the only package that imports FastAPI or Starlette."""

from service.api.app import create_app

__all__ = ["create_app"]
