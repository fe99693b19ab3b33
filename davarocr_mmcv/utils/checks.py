"""Argument checks shared by the hooks: each error names the argument, the
value and what it accepts.

A hook describes its arguments with a table, argument name -> :class:`Kind`
(what the argument accepts), and its ``__init__`` is wrapped by
:func:`checked`: every argument the call gives, those of ``**kwargs``
included, is checked against the table before the body runs. One error
type per kind of mistake: TypeError for a value of the wrong type,
ValueError for a value of the right type that is out of range.
"""
import difflib
import functools
import inspect
import os
import os.path as osp
from numbers import Integral, Real


class AssertedTypeError(TypeError, AssertionError):
    """A TypeError where mmcv 1.7.1 asserts (``save_best`` that is not a
    str): code that catches either catches it."""


class KeyedValueError(ValueError, KeyError):
    """A ValueError where mmcv 1.7.1 raises a KeyError (an unknown
    ``rule``): code that catches either catches it. Its text is the
    message, not KeyError's quoted repr of it."""

    def __str__(self):
        return str(self.args[0]) if self.args else ''


class Kind:
    """What an argument accepts.

    Args:
        text (str): the accepted values, as an error message says them
            (``'an int'``).
        of_type (callable): value -> whether its type is accepted; a value
            refused raises ``type_error``.
        problem (callable | None): value (of an accepted type) -> None, or
            what is wrong, as ``'must be ...'``; raises ``value_error``.
        type_error, value_error (type): the exception classes. Default:
            TypeError, ValueError.
    """

    def __init__(self, text, of_type, problem=None, type_error=TypeError,
                 value_error=ValueError):
        self.text = text
        self.of_type = of_type
        self.problem = problem
        self.type_error = type_error
        self.value_error = value_error

    def check(self, owner, arg, value):
        """Return ``value`` if accepted.

        Raises:
            TypeError: (``type_error``) naming ``owner``, ``arg``, the value,
                its type and what is accepted.
            ValueError: (``value_error``) naming the same, for a value out of
                range.
        """
        where = f'{owner}: {arg}' if owner else arg
        if not self.of_type(value):
            raise self.type_error(
                f'{where} must be {self.text}, got {value!r} '
                f'({type(value).__name__})')
        wrong = self.problem(value) if self.problem is not None else None
        if wrong:
            raise self.value_error(f'{where} {wrong}, got {value!r}')
        return value

    def where(self, problem, text=None, value_error=None):
        """This kind with the value test ``problem`` added (after its own)."""
        own = self.problem

        def both(value):
            return (own(value) if own else None) or problem(value)
        return Kind(text or self.text, self.of_type, both, self.type_error,
                    value_error or self.value_error)

    def raising(self, type_error=None, value_error=None):
        """This kind, raising these exception classes."""
        return Kind(self.text, self.of_type, self.problem,
                    type_error or self.type_error,
                    value_error or self.value_error)

    def or_none(self):
        """This kind, or None."""
        problem = self.problem
        return Kind(f'{self.text} or None',
                    lambda v: v is None or self.of_type(v),
                    None if problem is None else
                    (lambda v: None if v is None else problem(v)),
                    self.type_error, self.value_error)


def _is_int(value):
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, Real) and not isinstance(value, bool)


def _is_names(value):
    return isinstance(value, str) or (
        isinstance(value, (list, tuple)) and
        all(isinstance(v, str) for v in value))


def _names_problem(value):
    names = [value] if isinstance(value, str) else value
    if not all(names):
        return 'must not hold an empty name'
    return None


BOOL = Kind('True or False (a bool)', lambda v: isinstance(v, bool))
INT = Kind('an int', _is_int)
POSITIVE_INT = INT.where(
    lambda v: None if v > 0 else 'must be a positive int', 'a positive int')
NONNEGATIVE_INT = INT.where(
    lambda v: None if v >= 0 else 'must be an int >= 0', 'an int >= 0')
NUMBER = Kind('a number (int or float)', _is_real)
NAME = Kind('a str', lambda v: isinstance(v, str),
            lambda v: None if v else 'must not be empty')
NAMES = Kind('a str or a list of str', _is_names, _names_problem)
NAME_LIST = Kind('a list or tuple of str',
                 lambda v: isinstance(v, (list, tuple)) and _is_names(v),
                 _names_problem)
PATH = Kind('a path (str)', lambda v: isinstance(v, (str, os.PathLike)))
DICT = Kind('a dict', lambda v: isinstance(v, dict))
CALLABLE = Kind('a callable', callable)


def _one_or_many(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def one_or_list(kind, text):
    """A value of ``kind``, or a list or tuple of them (not None)."""
    def of_type(value):
        return value is not None and \
            all(kind.of_type(v) for v in _one_or_many(value))

    def problem(value):
        return next(filter(None, map(kind.problem or (lambda v: None),
                                     _one_or_many(value))), None)
    return Kind(text, of_type, problem, kind.type_error, kind.value_error)


def fraction(high_open=False):
    """A number in [0, 1], or [0, 1) with ``high_open``."""
    text = f'a fraction in [0, 1{")" if high_open else "]"}'

    def problem(value):
        inside = 0 <= value < 1 if high_open else 0 <= value <= 1
        return None if inside else f'must be {text}'
    return NUMBER.where(problem, text)


def one_of(choices, value_error=ValueError):
    """One of the strings ``choices``."""
    choices = tuple(choices)
    text = f'one of {choices}'
    return Kind(text, lambda v: isinstance(v, str),
                lambda v: None if v in choices else f'must be {text}',
                value_error=value_error)


def check_choice(value, choices, arg):
    """Return ``value`` if it is one of ``choices`` (strings).

    Raises:
        TypeError: ``value`` is not a str, naming ``arg``.
        ValueError: naming ``arg`` and listing ``choices``.
    """
    return one_of(choices).check(None, arg, value)


def check_positive_int(value, arg, when='when its schedule is enabled'):
    """Return ``value`` if it is a positive int (TypeError for another
    type, ValueError for 0 or less; the message says ``when``)."""
    if not _is_int(value):
        raise TypeError(f'{arg} must be a positive int {when}, got '
                        f'{value!r} ({type(value).__name__})')
    if value <= 0:
        raise ValueError(f'{arg} must be a positive int {when}, '
                         f'got {value!r}')
    return value


def _inside_problem(name):
    norm = osp.normpath(name)
    if osp.isabs(name) or norm == '..' or norm.startswith('..' + osp.sep):
        return ('must stay inside out_dir (a relative path without ".." '
                'escaping it)')
    return None


def _template_problem(tmpl):
    rest = tmpl.replace('{}', '')
    if tmpl.count('{}') != 1 or '{' in rest or '}' in rest:
        return ('must be a str with exactly one "{}" for the epoch or '
                'iteration, e.g. "epoch_{}.pth"')
    return _inside_problem(tmpl)


#: a file name inside out_dir
FILE_NAME = NAME.where(_inside_problem)
#: a checkpoint name template: one ``{}``, no other braces, inside out_dir
FILENAME_TMPL = NAME.where(_template_problem)


def check_inside(name, arg):
    """A relative path that stays inside its folder (no absolute path, no
    ``..`` escaping it)."""
    return FILE_NAME.check(None, arg, name)


def check_filename_tmpl(tmpl, arg='filename_tmpl'):
    """A checkpoint name template (:data:`FILENAME_TMPL`)."""
    return FILENAME_TMPL.check(None, arg, tmpl)


# ----------------------------------------------------------- the tables
def check_arguments(owner, table, values):
    """Check every entry of ``values`` (argument name -> value) that
    ``table`` (argument name -> :class:`Kind`) names; the others pass."""
    for arg, value in values.items():
        kind = table.get(arg)
        if kind is not None:
            kind.check(owner, arg, value)


def given_arguments(signature, args, kwargs):
    """The arguments a call gives, by name, those of ``**kwargs`` (and
    keyword-only ones) included; defaults not added."""
    bound = signature.bind(*args, **kwargs)
    given = {}
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            given.update(value)
        elif kind is not inspect.Parameter.VAR_POSITIONAL:
            given[name] = value
    return given


def checked(table):
    """Decorate a hook's ``__init__``: each argument the call gives that
    ``table`` names is checked (:func:`check_arguments`, the hook's class
    name as owner) before the body runs. The signature stays the
    function's (``inspect.signature`` follows ``__wrapped__``); the table
    is the wrapper's ``arguments``."""
    def decorate(init):
        signature = inspect.signature(init)

        @functools.wraps(init)
        def checked_init(self, *args, **kwargs):
            try:
                given = given_arguments(signature, (self, *args), kwargs)
            except TypeError:  # a call that does not fit: init says how
                given = {}
            check_arguments(type(self).__name__, table, given)
            return init(self, *args, **kwargs)
        checked_init.arguments = table
        return checked_init
    return decorate


def argument_table(cls):
    """Every argument table of ``cls``'s checked ``__init__``s (its own
    first); None if it has none."""
    table = {}
    for base in reversed(inspect.getmro(cls)):
        table.update(getattr(vars(base).get('__init__'), 'arguments', {}))
    return table or None


def argument_names(*classes):
    """The names the ``__init__`` of ``classes`` and of their bases take
    (not ``self``, not ``*args`` / ``**kwargs``)."""
    names = set()
    for cls in classes:
        for base in inspect.getmro(cls):
            init = vars(base).get('__init__')
            if inspect.isfunction(init):
                names.update(
                    name for name, p in inspect.signature(
                        init).parameters.items()
                    if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    names.discard('self')
    return names


# ---------------------------------------------------------------- names
def edit_distance(a, b):
    """Optimal string alignment distance: insertions, deletions,
    substitutions and swaps of two neighbours count one each."""
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(rows[i - 1][j] + 1, row[j - 1] + 1,
                         rows[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and \
                    a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[i - 2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def near_miss(name, names):
    """The name of ``names`` that ``name`` is a slip of (an edit distance
    of 1, or 2 for names of 6 characters or more; not ``name`` itself),
    else None.

    >>> near_miss('save_bets', ['save_best', 'rule'])
    'save_best'
    """
    limit = 2 if len(name) >= 6 else 1
    close = sorted((edit_distance(name, n), n) for n in names if n != name)
    return close[0][1] if close and close[0][0] <= limit else None


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
