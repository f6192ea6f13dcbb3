"""The OpenAPI document as the app serves it, for tests that call the app through it (schemathesis)."""

import pytest
import schemathesis
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections

SCHEMATHESIS_CONFIG = {
    # Every check but `positive_data_acceptance`: a body can match the schema and still be refused
    # for what it names (a plan code or task that does not exist, a name taken), which no schema
    # can say.
    "checks": {"positive_data_acceptance": {"enabled": False}},
    "generation": {
        # Query parameters an operation does not take are ignored, as by most HTTP APIs (a cache
        # buster, a newer client's parameter): not an input error to look for.
        "allow-extra-parameters": False,
        # The tests send real keys; schemathesis checks on its own that calls without one are refused.
        "with-security-parameters": False,
    },
}


@pytest.fixture
def api_schema(request, db):
    """The document from /api/schema/, its operations called in-process (WSGI) on the test database."""
    # Schemathesis's pytest plugin names each operation's subtest through `node._nodeid`, which
    # pytest 9 no longer has.
    request.node._nodeid = request.node.nodeid
    # As Django's test client does: the app must not close the test's connection (and its transaction).
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi(
            "/api/schema/?format=json",
            WSGIHandler(),
            config=schemathesis.Config.from_dict(SCHEMATHESIS_CONFIG),
        )
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
