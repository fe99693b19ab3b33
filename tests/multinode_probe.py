"""A hook for the multi-node test: each rank writes the step it starts from
and the step it ends at to ``$DAVAR_PROBE_DIR/rank<R>.json``, a folder
outside the work root (the test's stand-in for a rank's console)."""
import json
import os

from mmcv.runner import HOOKS, Hook, get_dist_info


@HOOKS.register_module()
class StepProbeHook(Hook):

    def before_run(self, runner):
        self.start = dict(epoch=runner.epoch, iter=runner.iter)

    def after_run(self, runner):
        rank, world_size = get_dist_info()
        folder = os.environ['DAVAR_PROBE_DIR']
        with open(os.path.join(folder, f'rank{rank}.json'), 'w') as f:
            json.dump(dict(rank=rank, world_size=world_size,
                           start=self.start,
                           end=dict(epoch=runner.epoch, iter=runner.iter),
                           weights=sum(float(p.detach().double().sum())
                                       for p in runner.model.parameters())),
                      f)
