"""Test-suite settings.

Under CI (the CI environment variable is set) hypothesis draws the same examples on every run,
so a landing is judged on a reproducible suite; locally each run explores new examples.
"""

import os

try:
    from hypothesis import settings
except ImportError:  # the CUDA build-check venv runs tests/test_cuda.py only, without hypothesis
    settings = None

if settings is not None:
    settings.register_profile("ci", derandomize=True, print_blob=True)
    if os.environ.get("CI"):
        settings.load_profile("ci")
