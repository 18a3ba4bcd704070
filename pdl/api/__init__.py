"""The HTTP API: FastAPI under uvicorn, with principals, roles and problem details.

``create_app(service, principals)`` builds the application; ``pdl serve`` runs it.
"""

from pdl.api.app import create_app

__all__ = ["create_app"]
