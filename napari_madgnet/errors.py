"""The errors a user can fix, as one family.

Every error whose message already names the problem and the fix (a bad setting, an unreadable
file, labels that cannot teach anything, a diverged training run) derives from ``UserError``.
The CLI prints such an error as one line and exits 2; the widgets show it as a notification.
Anything else is a bug: the CLI lets its traceback through and the widgets ask for a report.

``UserError`` is a ``ValueError`` so that code written against the earlier ``ValueError``-based
errors keeps working; the more specific classes live beside the code that raises them (for example
``io.ImageReadError``, ``training.DataError``, ``registry.RegistryError``).
"""

from __future__ import annotations


class UserError(ValueError):
    """A problem in the user's input, settings or environment; the message says what to do."""


class ConfigError(UserError):
    """A setting of a config object (or a key of a YAML file) has the wrong type or range."""


def is_user_error(exc: BaseException) -> bool:
    """True for errors to show as a message: ``UserError`` and the OS errors about a named path.

    ``FileExistsError``, ``FileNotFoundError``, ``PermissionError``, ``IsADirectoryError``,
    ``NotADirectoryError`` and a full disk (``OSError`` with errno ENOSPC/EDQUOT) are the user's
    to fix (another name, another folder, free space); other ``OSError``s may be bugs.
    """
    import errno

    if isinstance(exc, UserError):
        return True
    named = (FileExistsError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
    if isinstance(exc, named):
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1))
