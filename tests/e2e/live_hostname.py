"""``[core] hostname_callable`` for the live stack's Celery workers.

Both workers run on one machine, so the usual FQDN cannot tell them apart; each reports the
name in ``MTREC_WORKER_NAME`` instead, and task instances record which worker ran them.
"""

import os


def worker_name() -> str:
    """The worker's name as task instances record it."""
    return os.environ["MTREC_WORKER_NAME"]
