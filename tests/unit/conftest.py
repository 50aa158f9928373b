"""Hypothesis profiles for the property tests (tests/unit/*/test_*_fuzz.py).

``ci`` (the default) keeps every property small enough that all of them together run in well
under a minute on a two-core machine; ``long`` (``HYPOTHESIS_PROFILE=long``) is the deeper run
recorded in perf/RESULTS.md. Neither has a deadline: a loaded CI machine must not turn a slow
example into a failure. A failure prints the example and a ``@reproduce_failure`` blob to rerun
it exactly.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])

settings.register_profile("ci", max_examples=100, **_COMMON)
settings.register_profile("long", max_examples=2000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
