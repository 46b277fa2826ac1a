"""``[core] hostname_callable`` for the live stack's services.

Every compose service runs on one machine there, so the usual FQDN cannot tell the two Celery
workers apart; each service reports its compose service name in ``MTREC_WORKER_NAME`` instead
(a container's own hostname in compose), and task instances record which worker ran them.
"""

import os


def worker_name() -> str:
    """The service's name as task instances record it."""
    return os.environ["MTREC_WORKER_NAME"]
