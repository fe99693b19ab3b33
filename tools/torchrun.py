"""torchrun (``python -m torch.distributed.run``, same arguments) as
tools/dist_train.sh starts it, with two additions for pre-emption
(docs/distributed.md, "Pre-emption"):

- SIGUSR1, which slurm sends ahead of a time limit with ``--signal``, is
  forwarded to the workers as SIGTERM is, unless ``--signals-to-handle``
  (or ``PET_SIGNALS_TO_HANDLE``) says otherwise;
- when the workers stopped on a pre-emption signal after writing a
  resumable checkpoint, it exits 75, as they do. torchrun itself exits 1
  when it was signalled, whatever its workers did.
"""
import os
import signal
import sys
import tempfile

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import main

#: davarocr_mmcv.core.preempt.PREEMPTED_EXIT_CODE and PREEMPTED_FILE_ENV
#: (not imported: the agent does not load the training stack).
PREEMPTED_EXIT_CODE = 75
PREEMPTED_FILE_ENV = 'DAVAR_PREEMPTED_FILE'
#: torchrun's default signals, and SIGUSR1.
SIGNALS = 'SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1'


def launch(argv):
    """Run torchrun with ``argv``; the exit status."""
    os.environ.setdefault('PET_SIGNALS_TO_HANDLE', SIGNALS)
    fd, marker = tempfile.mkstemp(prefix='davar-preempted-')
    os.close(fd)
    os.environ[PREEMPTED_FILE_ENV] = marker  # the workers write into it
    try:
        main(argv)
        return 0
    except SignalException as exc:  # torchrun was signalled, closed them
        if os.path.getsize(marker):
            print(f'torchrun: {exc.sigval.name}; the workers stopped with '
                  'a resumable checkpoint (exit status '
                  f'{PREEMPTED_EXIT_CODE})', file=sys.stderr)
            return PREEMPTED_EXIT_CODE
        return 128 + int(exc.sigval)
    except ChildFailedError as exc:  # only the workers were signalled
        # once one exits 75, torchrun stops the others with SIGTERM, which
        # may catch them on their way out
        codes = {f.exitcode for f in exc.failures.values()}
        if os.path.getsize(marker) and PREEMPTED_EXIT_CODE in codes and \
                codes <= {PREEMPTED_EXIT_CODE, -signal.SIGTERM}:
            print('torchrun: the workers stopped with a resumable '
                  f'checkpoint (exit status {PREEMPTED_EXIT_CODE})',
                  file=sys.stderr)
            return PREEMPTED_EXIT_CODE
        raise
    finally:
        os.unlink(marker)


if __name__ == '__main__':
    sys.exit(launch(sys.argv[1:]))
