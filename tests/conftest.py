import os

from hypothesis import HealthCheck, settings

# Wall-clock deadlines make property tests flaky on a loaded 2-core CI machine; speed is
# measured by benchmarks/, never by tests.
settings.register_profile("default", deadline=None)
settings.register_profile(
    "ci", deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "default")
