"""torchrun's elastic restarts, as a worker sees them.

Under ``torchrun --max-restarts=N`` the agent stops every worker when one
fails and starts them all again: attempt 0, then 1, ... up to N
(``TORCHELASTIC_RESTART_COUNT``). With the static rendezvous
(``--master-port``) and with the c10d one when it shares its store (torch's
default), the workers of every attempt meet in the agent's TCPStore at
``MASTER_ADDR:MASTER_PORT``, which lives as long as the agent. What one
attempt wrote there (each rank's gloo address, NCCL's unique id) is still
there for the next, and a restarted rank that reads it connects to a dead
port: a hang in ``init_process_group``, or ``Gloo connectFullMesh failed
... Connection refused``. Here the workers of attempt k join through the
keys under ``/worker/attempt_k/`` of that store, which no earlier attempt
wrote.
"""
import collections
import datetime
import os
import warnings

import torch.distributed as dist
from torch.distributed.constants import (default_pg_nccl_timeout,
                                         default_pg_timeout)

#: Where attempt k's keys live in the agent's store.
ATTEMPT_PREFIX = '/worker/attempt_{}'

#: ``index`` is 0 for the first start, k after the k-th restart.
Attempt = collections.namedtuple('Attempt', 'index max_restarts')


def restart_attempt(env=None):
    """This worker's attempt: ``Attempt(index, max_restarts)`` under an
    elastic agent (torchrun), None otherwise."""
    env = os.environ if env is None else env
    if 'TORCHELASTIC_RESTART_COUNT' not in env:
        return None
    return Attempt(int(env['TORCHELASTIC_RESTART_COUNT']),
                   int(env.get('TORCHELASTIC_MAX_RESTARTS', 0)))


def check_timeout(timeout, arg='dist_params.timeout'):
    """``timeout`` in seconds as a ``timedelta``; None stays None (torch's
    default).

    Raises:
        ValueError: naming ``arg`` and what it accepts.
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or \
            not isinstance(timeout, (int, float)) or \
            not 0 < timeout < float('inf'):
        raise ValueError(
            f'{arg} must be a positive number of seconds (int or float, '
            f'e.g. 1800), or None for torch\'s default (1800 s; 600 s with '
            f'NCCL); got {timeout!r}')
    return datetime.timedelta(seconds=timeout)


def default_timeout(backend):
    """torch's timeout of a process group of ``backend``."""
    return default_pg_nccl_timeout if backend == 'nccl' and \
        default_pg_nccl_timeout is not None else default_pg_timeout


def attempt_store(timeout, env=None):
    """The agent's store, as this attempt's workers must share it.

    Args:
        timeout (timedelta): how long a store operation may wait.

    Returns:
        PrefixStore | None: a client of the agent's store at
        ``MASTER_ADDR:MASTER_PORT`` (no second server is started) seen
        through this attempt's prefix; None when the workers do not meet
        in the agent's store (no elastic agent; or the c10d rendezvous with
        ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``, where global rank 0 hosts
        a fresh store at every attempt), so ``env://`` is right.
    """
    env = os.environ if env is None else env
    attempt = restart_attempt(env)
    if attempt is None or env.get('TORCHELASTIC_USE_AGENT_STORE') != 'True':
        return None
    if attempt.max_restarts > 0 and int(env.get('GROUP_WORLD_SIZE', 1)) > 1:
        warnings.warn(
            'torchrun --max-restarts on several machines with the store '
            'shared across attempts: each agent counts its restarts apart '
            '(c10d: an agent restarting for another machine\'s failure does '
            'not count it; static: an agent hears of another machine\'s '
            'failure only when its own workers fail), so the machines may '
            'not agree on the attempt and a restart can wait until '
            'dist_params.timeout. Use the c10d rendezvous with a fresh store '
            'per attempt: RDZV=c10d in tools/dist_train.sh, or torchrun '
            '--rdzv-backend=c10d with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1.',
            stacklevel=2)
    store = dist.TCPStore(env['MASTER_ADDR'], int(env['MASTER_PORT']),
                          int(env['WORLD_SIZE']), is_master=False,
                          timeout=timeout)
    return dist.PrefixStore(ATTEMPT_PREFIX.format(attempt.index), store)
