"""The one keeper of the best: eval hooks produce records, the keeper
decides whether a record is a new best and writes the best file through the
run's writer (:func:`~.writer.run_writer`); the hooks only say, once, what
they want kept (a :class:`Ledger`)."""
from typing import Callable, NamedTuple, Optional

from . import state
from .writer import run_writer, save_step


class Ledger(NamedTuple):
    """What one hook wants kept of the best.

    Attributes:
        owner: the hook that asked (its ledgers replace its earlier ones).
        trackers (callable): ``trackers(runner, record)``, the
            :class:`~.metrics.BestTracker` s deciding on ``record`` ([] to
            pass over it).
        filename (str): file of the best, formatted with ``metric``,
            ``unit`` and ``step`` when it holds ``{``: then each best is a
            new file and the previous one is removed (mmcv's
            ``best_{metric}_{unit}_{step}.pth``); else the same file is
            replaced (DavarOCR's ``Best_checkpoint.pth``).
        out_dir (str): folder of the file; the run's writer for it writes.
        file_client (FileClient | None): backend of ``out_dir``.
        save_optimizer (bool): store the optimizer state in the file.
        extra_meta (dict | None): stored in the file's meta, under the
            runner's own entries.
        on_best (callable | None): ``on_best(runner, record, path)`` once a
            new best is decided (before it is written).
        on_written (callable | None): ``on_written(path)`` once it is.
    """
    owner: object
    trackers: Callable
    filename: str
    out_dir: str
    file_client: object = None
    save_optimizer: bool = True
    extra_meta: Optional[dict] = None
    on_best: Optional[Callable] = None
    on_written: Optional[Callable] = None

    @property
    def rolling(self):
        return '{' in self.filename


class BestKeeper:
    """Keeps the best of every ledger of a run; one per runner
    (:meth:`of`)."""

    def __init__(self):
        self.ledgers = []

    @classmethod
    def of(cls, runner):
        return state.slot(runner, 'best_keeper', cls)

    def keep(self, ledger):
        """Register ``ledger``, replacing those of the same owner."""
        self.ledgers = [x for x in self.ledgers if x.owner is not ledger.owner]
        self.ledgers.append(ledger)

    def drop(self, owner):
        self.ledgers = [x for x in self.ledgers if x.owner is not owner]

    def consider(self, runner, record):
        """Decide on ``record`` for every ledger, the ledgers of the hook
        that evaluated (``record.source``) first; write each new best."""
        for ledger in sorted(self.ledgers,
                             key=lambda x: x.owner is not record.source):
            for tracker in ledger.trackers(runner, record):
                self._decide(runner, record, ledger, tracker)

    @staticmethod
    def _decide(runner, record, ledger, tracker):
        writer = run_writer(runner, ledger.out_dir, ledger.file_client)
        name = ledger.filename.format(
            metric=tracker.metric, unit=record.unit, step=record.step) \
            if ledger.rolling else ledger.filename
        best = tracker.candidate(runner, record, writer.path(name))
        if not best:
            return
        score = best[state.best_key(state.BEST_SCORE, tracker.suffix)]
        ckpt_key = state.best_key(state.BEST_CKPT, tracker.suffix)
        previous = state.hook_msgs(runner).get(ckpt_key)
        if not ledger.rolling:
            runner.logger.info(
                f'New best {tracker.metric}: {score} at {record.unit} '
                f'{record.step}; saving {name}')
        if ledger.on_best is not None:
            ledger.on_best(runner, record, best[ckpt_key])

        def commit(updates):
            if not updates:
                return  # not written: the previous best stays
            state.hook_msgs(runner).update(updates)
            if ledger.on_written is not None:
                ledger.on_written(updates[ckpt_key])
            if not ledger.rolling:
                return
            if previous and previous != updates[ckpt_key]:
                writer.remove(previous)
            runner.logger.info(
                f'Now best checkpoint is saved as {name}. Best '
                f'{tracker.metric} is {score} at {record.step} '
                f'{record.unit}.')
        writer.submit([save_step(runner, record, name, best,
                                 ledger.save_optimizer,
                                 extra_meta=ledger.extra_meta)],
                      state.hook_msgs(runner), commit)


def publish_evaluation(runner, record, source=None):
    """Record ``record`` in ``hook_msgs['eval_history']``, let the keeper
    decide on it, then hand it to every hook that listens
    (``after_evaluation(runner, record)``), ``source`` first."""
    state.record_evaluation(runner, record)
    BestKeeper.of(runner).consider(runner, record)
    state.notify(runner, 'after_evaluation', record, first=source)
