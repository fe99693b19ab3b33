"""Imports the modules named on the command line, in that order, in this
fresh interpreter; then builds DavarOCR's registry names the way a DavarOCR
config does and prints one JSON line: the module of each class built, and
every warning raised while importing, after "PROBE "
(see test_davarocr_coexist.py).
"""
import importlib
import json
import logging
import sys
import tempfile
import warnings


def main(names):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        for name in names:
            importlib.import_module(name)

    import torch
    from mmcv.runner import HOOKS, RUNNERS, build_runner

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(1, 1)

        def train_step(self, data_batch, optimizer=None, **kwargs):
            raise NotImplementedError

    model = Model()
    runner = build_runner(
        dict(type='DistillRunner', max_epochs=1),
        default_args=dict(model=model, work_dir=tempfile.mkdtemp(),
                          optimizer=torch.optim.SGD(model.parameters(), 0.1),
                          logger=logging.getLogger('coexist_probe')))
    # what tools/train.py and DavarOCR's train_model hand to mmcv
    runner.register_training_hooks(
        lr_config=dict(policy='Reduceonplateau', metric='accuracy'),
        checkpoint_config=dict(type='DavarCheckpointHook', interval=1))
    hooks = {type(h).__name__: type(h) for h in runner.hooks}
    built = dict(
        DistillRunner=type(runner),
        DavarCheckpointHook=hooks['DavarCheckpointHook'],
        ReduceonplateauLrUpdaterHook=hooks['ReduceonplateauLrUpdaterHook'])
    print('PROBE ' + json.dumps(dict(
        built={name: cls.__module__ for name, cls in built.items()},
        registered={name: (HOOKS.get(name) or RUNNERS.get(name)).__module__
                    for name in built},
        warnings=[dict(category=w.category.__name__, message=str(w.message),
                       filename=w.filename) for w in caught])))


if __name__ == '__main__':
    main(sys.argv[1:])
