"""Living beside other packages, and the one page on mmcv's internals.

``registry`` (imported by ``davarocr_mmcv`` itself) decides which class a
name shared with mmcv or DavarOCR builds. ``davarocr`` is opt-in: nothing in
it runs unless a config or a script imports ``davarocr_mmcv.compat.davarocr``.

mmcv internals
==============

Every place where davarocr_mmcv patches, re-runs or leans on something of
mmcv (or mmdet, torch) that is not its public API, with why, and what an
upgrade of mmcv would break. Pinned: mmcv-full 1.7.1, mmdet 2.28.

1. ``compat/registry.py`` :func:`~.registry.add_rule` replaces
   ``_register_module`` on the ``HOOKS`` and ``RUNNERS`` registry objects
   (instances only, at ``import davarocr_mmcv``). Why: DavarOCR's
   ``davarocr.mmcv`` registers ``DavarCheckpointHook``,
   ``ReduceonplateauLrUpdaterHook`` and ``DistillRunner`` too; mmcv would
   raise ``KeyError: already registered``. Breaks if: ``register_module``
   stops going through ``_register_module(module, module_name, force)``
   (its name or signature), or ``module_dict`` is renamed. mmcv 2 /
   mmengine registries work differently (scopes): the module is then
   rewritten, not adjusted.
2. ``compat/davarocr.py`` (opt-in) adds ``mmdet.models.builder.build``
   (removed in mmdet 2.12), puts stand-ins for ``torch._six`` and
   ``warpctc_pytorch`` on ``sys.meta_path`` (asked last) and adds a rule
   (1.) to mmdet's ``MODELS``, ``DATASETS``, ``PIPELINES``. It also puts
   back numpy's removed aliases (``np.int``, ``np.float``, ``np.bool``,
   ``np.object``, ... : ``NUMPY_ALIASES``) where numpy lacks them, because
   DavarOCR's code uses them at run time. Breaks if: mmdet defines
   ``build`` again with another meaning (ours is then skipped), its
   registries move, or numpy reuses an alias name for something else.
3. ``runner/runners.py`` ``with_globals`` re-runs mmcv's own bytecode of
   ``EpochBasedRunner.val``, ``IterLoader.__next__`` and
   ``IterBasedRunner.run`` with module globals swapped (``time`` whose
   ``sleep`` returns at once; ``IterLoader`` -> ``DavarIterLoader``). Why:
   mmcv sleeps 2 s at each epoch transition and builds its ``IterLoader``
   inside ``run``; copying those methods would fork mmcv's code. Breaks if:
   these functions stop looking ``time`` / ``IterLoader`` up as module
   globals, or gain closures / decorators that ``inspect.unwrap`` does not
   see. ``DavarEpochBasedRunner.train`` is mmcv's loop rewritten (same hooks
   in the same order): a change of mmcv's ``train`` must be mirrored.
4. ``DavarIterLoader`` subclasses ``mmcv.runner.iter_based_runner.IterLoader``
   and sets its private ``_dataloader`` and ``_epoch``.
   ``core/resume.py`` and ``core/progress.py`` set the runners' private
   ``_epoch``, ``_iter``, ``_inner_iter`` (as mmcv's own ``resume`` does);
   ``hooks/status.py`` reads ``IterLoader._dataloader``. Breaks if: these
   attributes are renamed.
5. ``core/observe.py`` wraps, on each eval hook *instance* (mmcv's,
   mmdet's, ours), ``_do_evaluate`` and, while an evaluation runs,
   ``evaluate``; and swaps ``runner.log_buffer.output`` for a recording
   dict during every evaluation. Why: any ``EvalHook`` becomes an
   evaluation record (:mod:`davarocr_mmcv.core.best`), without patching a
   class. Breaks if: ``_do_evaluate`` stops being the one path of an
   evaluation, ``evaluate`` stops returning the key score, metrics stop
   going through ``log_buffer.output``, or ``key_indicator`` /
   ``initial_flag`` / ``by_epoch`` are renamed. It also reads mmcv's
   ``hook_msgs['best_score'/'best_ckpt']`` to date an mmcv hook's best.
6. ``hooks/evaluation.py`` ``DavarEvalHook`` subclasses mmcv's ``EvalHook``
   and keeps its extension points (``_should_evaluate``, ``_do_evaluate``,
   ``evaluate``, ``rule_map``, ``greater_keys``, ``initial_flag``), passes
   ``save_best=None`` up (the keeper fulfils mmcv's ``save_best``
   contract: ``best_{metric}_{epoch|iter}_{N}.pth``, ``hook_msgs``, logs),
   and calls the logger hooks' ``after_train_iter`` / ``log`` and
   ``log_buffer.clear_output`` to place the ``val`` record as mmcv does.
   Breaks if: mmcv's ``EvalHook`` changes those names, its file names or
   its warning text (``hooks.evaluation.EMPTY_RESULT_WARNING``).
   mmcv 1.7.1's own ``tests/test_runner/test_eval_hook.py`` runs against
   our classes (``tests/test_mmcv_contract.py``): rerun it on an upgrade.
7. ``hooks/checkpoint.py`` subclasses ``CheckpointHook`` but writes through
   :class:`~davarocr_mmcv.core.writer.CheckpointWriter`, never
   ``runner.save_checkpoint``; it relies on ``CheckpointHook.before_run``
   setting ``out_dir``, ``file_client`` and ``args``. ``sync_buffers``
   replaces mmcv's ``allreduce_params``, which fails on torch 2.
8. ``serialization.py`` adds numpy types to ``torch.serialization``'s safe
   globals, so that ``torch.load(weights_only=True)`` reads mmcv 1.x
   checkpoints. Breaks if: torch renames ``add_safe_globals``.
"""
