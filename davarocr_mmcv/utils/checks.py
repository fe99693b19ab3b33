"""Argument checks shared by the hooks: each error names the argument and
what it accepts."""
import difflib
import os.path as osp


def check_choice(value, choices, arg):
    """Return ``value`` if it is one of ``choices``.

    Raises:
        ValueError: naming ``arg`` and listing ``choices``.
    """
    if value not in choices:
        raise ValueError(f'{arg} must be one of {tuple(choices)}, '
                         f'got {value!r}')
    return value


def check_positive_int(value, arg, when='when its schedule is enabled'):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f'{arg} must be a positive int {when}, '
                         f'got {value!r}')
    return value


def check_inside(name, arg):
    """A relative path that stays inside its folder (no absolute path, no
    ``..`` escaping it)."""
    norm = osp.normpath(name)
    if osp.isabs(name) or norm == '..' or norm.startswith('..' + osp.sep):
        raise ValueError(f'{arg} must stay inside out_dir (a relative path '
                         f'without ".." escaping it); got {name!r}')
    return name


def check_filename_tmpl(tmpl, arg='filename_tmpl'):
    """A checkpoint name template: one ``{}``, no other braces, inside
    out_dir."""
    rest = tmpl.replace('{}', '') if isinstance(tmpl, str) else ''
    if not isinstance(tmpl, str) or tmpl.count('{}') != 1 or \
            '{' in rest or '}' in rest:
        raise ValueError(f'{arg} must be a str with exactly one "{{}}" for '
                         f'the epoch or iteration, e.g. "epoch_{{}}.pth"; '
                         f'got {tmpl!r}')
    return check_inside(tmpl, arg)


def unknown_names(given, known, accepted=None):
    """The names in ``given`` outside ``accepted`` (default: ``known``),
    each with the closest name of ``known`` as a suggestion; '' if none.

    >>> unknown_names({'intreval': 5}, ['interval', 'by_epoch'])
    "'intreval' (did you mean 'interval'?)"
    """
    accepted = set(known if accepted is None else accepted)
    described = []
    for name in given:
        if name in accepted:
            continue
        close = difflib.get_close_matches(name, list(known), n=1)
        hint = f' (did you mean {close[0]!r}?)' if close else ''
        described.append(f'{name!r}{hint}')
    return ', '.join(described)
