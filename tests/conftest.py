"""Test settings shared by the whole suite."""

from pathlib import Path

import pytest
from hypothesis import settings

BROWSER_TESTS = Path(__file__).resolve().parent / "browser"

# Property tests assert behaviour, not speed: a loaded CI machine must not turn a slow
# example into a failure. (Speed is measured in benchmarks/, never in tests.)
settings.register_profile("course", deadline=None, max_examples=100)
settings.load_profile("course")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the browser tests last: while Playwright is open an asyncio loop runs in the
    main thread, and a test that calls asyncio.run() would fail beside it."""
    items.sort(key=lambda item: BROWSER_TESTS in Path(str(item.path)).parents)
