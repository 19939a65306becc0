"""Adding domain routers to the application.

Examples
--------
>>> from fastapi import APIRouter, FastAPI
>>> app, router = FastAPI(), APIRouter()
>>> @router.get("/ping")
... def ping():
...     return "pong"
>>> mount(app, router)
>>> [r.path for r in app.routes][-1]
'/ping'
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI


def mount(app: FastAPI, router: APIRouter) -> None:
    """Add a domain router's routes to the app itself.

    The routes keep their own paths and dependencies; adding them directly (rather than through
    ``include_router``) keeps ``app.routes`` a flat list of ``APIRoute`` so that tools and tests can
    read every route's ``authorize(...)`` roles from it.
    """
    for route in router.routes:
        app.router.routes.append(route)
