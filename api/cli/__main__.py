"""``python -m api.cli``: the ``peerlens`` command."""

from api.cli import main

main()
