"""The top layer: the ``pdl`` command line and the HTTP API, over ``ledger`` and ``consumers``."""
