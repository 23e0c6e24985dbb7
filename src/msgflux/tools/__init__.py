"""Offline tools: run by the ``msgflux`` command, never by a gateway or the server.

* :mod:`msgflux.tools.litellm_import`: a LiteLLM proxy ``config.yaml`` into a ``msgflux serve``
  config (``msgflux config import-litellm``).
"""
