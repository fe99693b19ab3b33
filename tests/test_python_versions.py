"""setup.py's python_requires says what the code needs: vermin's analysis of
davarocr_mmcv/ and tools/ finds no newer Python, and no older one."""
import ast
import os
import re
import subprocess
import sys

from procs import ROOT


def setup_keywords():
    """The keyword arguments of setup() in setup.py, as Python values."""
    with open(os.path.join(ROOT, 'setup.py')) as f:
        tree = ast.parse(f.read())
    (call, ) = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
                and getattr(node.func, 'id', None) == 'setup']
    return {k.arg: k.value for k in call.keywords}


def test_python_requires_is_the_oldest_python_the_code_needs():
    required = ast.literal_eval(setup_keywords()['python_requires'])
    oldest = re.fullmatch(r'>=(3\.\d+)', required).group(1)
    vermin = os.path.join(os.path.dirname(sys.executable), 'vermin')
    proc = subprocess.run(
        [vermin, '--no-tips', '--eval-annotations', '--violations',
         f'-t={oldest}-', 'davarocr_mmcv', 'tools'],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, \
        f'the code needs a newer Python than {required}:\n{proc.stdout}'
    proc = subprocess.run([vermin, '--no-tips', '--eval-annotations',
                           'davarocr_mmcv', 'tools'], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert f'Minimum required versions: {oldest}\n' in proc.stdout, \
        proc.stdout


def test_the_classifiers_name_the_pythons_the_suite_ran_on():
    classifiers = ast.literal_eval(setup_keywords()['classifiers'])
    ran = {c.rsplit(' :: ', 1)[1] for c in classifiers
           if re.fullmatch(r'Programming Language :: Python :: 3\.\d+', c)}
    assert ran == {'3.11', '3.12'}
