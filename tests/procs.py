"""Running the tools in a bounded subprocess, as a user would."""
import os
import signal
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(args, env=None, cwd=ROOT):
    """``args`` started in its own process group, stdout and stderr
    together in one text pipe."""
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def finish(proc, timeout=300):
    """(exit status, output) of ``proc``; its whole process group is killed
    if it outlives ``timeout`` seconds."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        kill_group(proc)
    return proc.returncode, out


def kill_group(proc):
    """Kill ``proc``'s process group if ``proc`` still runs."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_bounded(args, env=None, timeout=300, cwd=ROOT):
    """(exit status, stdout and stderr together) of ``args`` run in its own
    process group from the repository root; the whole group is killed if
    it outlives ``timeout`` seconds."""
    return finish(start(args, env, cwd), timeout)


def package_folders():
    """The folders this interpreter finds packages in, in order: its
    site-packages and what .pth files add (an image's venv of packages),
    not the standard library nor this clone (its tests put it on the path);
    what a scratch venv's .pth names so that it
    sees this environment's packages, as tools/setup_env.sh does for
    SYSTEM_TORCH=1."""
    import sysconfig
    stdlib = {os.path.realpath(sysconfig.get_paths()[k])
              for k in ('stdlib', 'platstdlib')}
    return [p for p in sys.path if p and os.path.isdir(p) and
            os.path.realpath(p) not in stdlib and
            os.path.basename(p) != 'lib-dynload' and
            os.path.realpath(p) not in (ROOT, os.path.join(ROOT, 'tests'))]


def tool_env(*paths):
    """The environment of a tool run: unbuffered, one thread, ``paths``
    before the caller's PYTHONPATH."""
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    path = os.pathsep.join(
        p for p in (*paths, os.environ.get('PYTHONPATH')) if p)
    if path:
        env['PYTHONPATH'] = path
    return env


def run_tool(env, *args, timeout=300):
    """(exit status, output) of ``python ARGS`` run from the repository
    root with ``env``."""
    return run_bounded([sys.executable, *args], env, timeout)


def tool_ok(env, *args, timeout=300):
    """The output of ``python ARGS`` (see :func:`run_tool`), which must
    exit 0."""
    code, out = run_tool(env, *args, timeout=timeout)
    assert code == 0, f'{args} exited {code}:\n{out[-6000:]}'
    return out
