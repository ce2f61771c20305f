"""Serving core: config, A/B arms, the model registry and the ranking engine the HTTP
service (service/) calls. Nothing here knows about HTTP."""
