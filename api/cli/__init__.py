"""The ``peerlens`` command (``api.cli:main``): the application is built in :mod:`api.cli.core` and
each module of this package adds the commands of one concern.

Examples
--------
.. code-block:: console

    $ peerlens migrate
    $ peerlens demo --participants 120
    $ peerlens users create ana@example.org --role coordinator --site north
    $ peerlens serve --port 8000
"""

from __future__ import annotations

import importlib

from api.cli.core import app

# Importing a module registers its commands; in this order they are listed by ``peerlens --help``.
for _module in ("ops", "accounts", "data", "analysis", "process"):
    importlib.import_module(f"api.cli.{_module}")

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point (``peerlens``)."""
    app()
