"""The shared torch training core: models, losses, batching, trainer, transfer, metrics.

Imports only torch and numpy, so it runs the same under DVC, Airflow or a notebook.
"""
