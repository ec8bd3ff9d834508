"""`python -m ihlib.book`: run the book (see `ihlib.book`)."""

import sys

from ihlib.book.cli import main

sys.exit(main())
