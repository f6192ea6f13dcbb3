import pytest

import tests.jobs.runners  # noqa: F401  (registers the test job kinds)


@pytest.fixture
def in_process(settings):
    """Run jobs in the test process (no worker, no heartbeat thread): for unit tests only."""
    settings.JOBS_HEARTBEAT_SECONDS = 0
    settings.JOBS_PROGRESS_SECONDS = 0
    return settings
