from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest tests first: the module that sets ``RUN_FIRST`` (the experiments page,
    minutes), then the other end-to-end tests, then the unit tests. Under pytest-xdist
    (`make test`) one worker starts on the longest while the other takes the rest, so
    that both finish at about the same time instead of one waiting for the last long one."""
    def rank(item: pytest.Item) -> int:
        if getattr(item.module, "RUN_FIRST", False):
            return 0
        return 1 if item.get_closest_marker("e2e") else 2
    items.sort(key=rank)  # stable: the order inside each group is kept
