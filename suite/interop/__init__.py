"""Bridges to weights trained outside the suite: `book` reads the "Deep Learning from Scratch" pickles."""
from suite.errors import BookParamsError, UnsafePickleError
from suite.interop.book import book_to_keras_weights, import_book_params, load_book_params

__all__ = [
    "BookParamsError",
    "UnsafePickleError",
    "book_to_keras_weights",
    "import_book_params",
    "load_book_params",
]
