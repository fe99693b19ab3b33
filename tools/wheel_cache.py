"""The mmcv-full wheel cache of tools/setup_env.sh: what counts as a cache
entry, and how a built wheel becomes one.

    python tools/wheel_cache.py check ENTRY
    python tools/wheel_cache.py store BUILT ENTRY

An entry is a folder holding exactly one ``mmcv_full-*.whl`` that pip can
read (its name parses as a wheel's, it is a whole zip archive, and its
``.dist-info`` names mmcv-full). ``check`` prints that wheel's path (exit
status 0) or why ENTRY is not an entry (exit status 1; 2 if it is missing).

``store`` takes the folder a build wrote into (``pip wheel -w BUILT``),
checks it the same way, copies its wheel into a private, uniquely named
folder beside ENTRY, flushes it to disk and renames that folder to ENTRY:
an entry appears whole or not at all, whatever stops the set-up. Anything
at ENTRY that is not an entry is replaced; an entry already there (a
set-up beside this one finished first) is kept. Prints the entry's wheel.

Standard library only (the interpreter of a fresh venv runs it).
"""
import os
import re
import shutil
import sys
import tempfile
import zipfile

PREFIX = 'mmcv_full-'
#: name-version(-build)?-python-abi-platform.whl
WHEEL_NAME = re.compile(
    r'^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$')


class NotAnEntry(Exception):
    """Why a folder is not a usable cache entry."""


def unreadable(wheel):
    """Why pip could not read ``wheel``, or '' if it can."""
    match = WHEEL_NAME.match(os.path.basename(wheel))
    if not match:
        return 'its file name is not a wheel name'
    try:
        with zipfile.ZipFile(wheel) as archive:
            damaged = archive.testzip()
            names = archive.namelist()
            metadata = [n for n in names
                        if re.fullmatch(r'[^/]+\.dist-info/METADATA', n)]
            if damaged is not None:
                return f'its member {damaged} is damaged'
            if len(metadata) != 1:
                return 'it has no .dist-info/METADATA'
            text = archive.read(metadata[0]).decode('utf-8', 'replace')
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        return f'it is not a whole zip archive ({error})'
    name = re.search(r'^Name: *(.+?) *$', text, re.M)
    if not name or re.sub(r'[-_.]+', '-', name.group(1).lower()) \
            != 'mmcv-full':
        return 'its metadata does not name mmcv-full'
    return ''


def entry_wheel(entry):
    """The one readable ``mmcv_full-*.whl`` in the folder ``entry``.

    Raises:
        FileNotFoundError: nothing is at ``entry``.
        NotAnEntry: saying what is there instead.
    """
    if not os.path.lexists(entry):
        raise FileNotFoundError(entry)
    if not os.path.isdir(entry):
        kind = 'a link' if os.path.islink(entry) else 'a file'
        raise NotAnEntry(f'it is {kind}, not a folder')
    wheels = sorted(n for n in os.listdir(entry)
                    if n.startswith(PREFIX) and n.endswith('.whl'))
    if len(wheels) != 1:
        raise NotAnEntry(f'it holds {len(wheels)} {PREFIX}*.whl files, '
                         'not one' + (f' ({", ".join(wheels)})'
                                      if wheels else ''))
    wheel = os.path.join(entry, wheels[0])
    why = unreadable(wheel)
    if why:
        raise NotAnEntry(f'its wheel {wheels[0]} is unreadable: {why}')
    return wheel


def remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def store(built, entry):
    """Make ``entry`` from the wheel pip wrote into the folder ``built``;
    return the entry's wheel."""
    try:
        wheel = entry_wheel(built)
    except FileNotFoundError:
        raise NotAnEntry(f'the build left nothing at {built}') from None
    except NotAnEntry as error:
        raise NotAnEntry(f'the build output {built} is unusable: {error}'
                         ) from None
    parent = os.path.dirname(os.path.abspath(entry))
    os.makedirs(parent, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=f'.{os.path.basename(entry)}.',
                             suffix='.staging', dir=parent)
    try:
        staged = os.path.join(stage, os.path.basename(wheel))
        shutil.copyfile(wheel, staged)
        with open(staged, 'rb') as f:
            os.fsync(f.fileno())
        os.chmod(stage, 0o755)
        try:
            existing = entry_wheel(entry)
        except FileNotFoundError:
            existing = None
        except NotAnEntry:
            remove(entry)
            existing = None
        if existing:  # a set-up beside this one finished first
            return existing
        try:
            os.rename(stage, entry)
        except OSError:  # taken meanwhile: keep the one there if whole
            return entry_wheel(entry)
        stage = None
        return os.path.join(entry, os.path.basename(wheel))
    finally:
        if stage:
            shutil.rmtree(stage, ignore_errors=True)


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(
        prog='tools/wheel_cache.py',
        description="The mmcv-full wheel cache of tools/setup_env.sh.")
    verbs = parser.add_subparsers(dest='verb', required=True)
    check = verbs.add_parser(
        'check', help="print the entry's wheel (exit status 0), or why it "
        'is not an entry (1; 2 if nothing is there)')
    check.add_argument('entry', metavar='ENTRY')
    put = verbs.add_parser(
        'store', help='make ENTRY from the wheel a build wrote into BUILT, '
        'whole or not at all; print its wheel')
    put.add_argument('built', metavar='BUILT')
    put.add_argument('entry', metavar='ENTRY')
    args = parser.parse_args(argv)
    if args.verb == 'check':
        try:
            print(entry_wheel(args.entry))
        except FileNotFoundError:
            print('it does not exist')
            return 2
        except NotAnEntry as error:
            print(error)
            return 1
        return 0
    try:
        print(store(args.built, args.entry))
    except NotAnEntry as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
