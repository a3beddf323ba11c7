"""Deployment descriptions of a project for platforms other than `faas up`.

    kubernetes.py   Deployments, Services, KEDA ScaledObjects, the gateway (pure)
    tags.py         each function's image tag, as `faas build` names it (asks the engine)

Kept free of imports, so that the CLI can name the defaults without loading an exporter.
"""

DEFAULT_GATEWAY_IMAGE = "faas-gateway:latest"
"""An image with this package installed, whose `faas` command serves the gateway."""
