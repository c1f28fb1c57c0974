"""Test settings shared by the whole suite."""

from hypothesis import settings

# Property tests assert behaviour, not speed: a loaded CI machine must not turn a slow
# example into a failure. (Speed is measured in benchmarks/, never in tests.)
settings.register_profile("course", deadline=None, max_examples=100)
settings.load_profile("course")
