"""faas: a serverless functions runtime for Python.

Replicas carry this file with `faas/handler.py` (runtime/images.py): it must stay
free of imports so that `import faas.handler` costs a replica nothing more.
"""
