"""Test-suite settings.

Under CI (the CI environment variable is set) hypothesis draws the same examples on every run,
so a landing is judged on a reproducible suite; locally each run explores new examples.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
