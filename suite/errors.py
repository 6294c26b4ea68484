"""The suite's error types, in one place: every layer raises them, the command line catches them.

Messages name options as config fields in backticks (`init_from`, `batch_size=0`), so a Python
caller reads the field it passed; the command-line layer (suite.runtime.flags.as_flags) words
the same text as flags (--init_from, --batch_size=0). Each says what is wrong and how to fix it.

Bad input is a ValueError, a state the folder is in a RuntimeError: the command line turns both
into one `error:` line and exit code 2, before anything saved is touched.
"""
from __future__ import annotations


class ConfigError(ValueError):
    """An option's value is not allowed (bounds, choices, another option it needs)."""


class DataError(ValueError):
    """A dataset file is missing, corrupt or not what was expected; the message says the fix."""


class ExportError(ValueError):
    """The model or the export destination cannot be used as asked."""


class BookParamsError(ValueError):
    """The file or dict is not a usable book DeepConvNet parameter set."""


class UnsafePickleError(BookParamsError):
    """The pickle asked for a global outside the NumPy-array allowlist (it may try to run code)."""


class DamagedStateError(RuntimeError):
    """The backup on disk cannot be read: the message names the file and the ways forward."""


class StateMismatchError(RuntimeError):
    """The backup is readable but was written for other models (another configuration)."""


class RunLockedError(RuntimeError):
    """Another live process holds the folder's lock."""
