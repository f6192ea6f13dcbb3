"""Schemathesis against the OpenAPI document (/api/schema/): every operation of /api/v1/, with
generated parameters and bodies, valid and invalid ones, sent by two tenants' API keys and by
tenant A's partner admin (a session: the partner console takes no key).

Checks (schemathesis's own): no server error, every status and content type documented, every
answer matching its documented schema, invalid input refused, authentication enforced (all but
`positive_data_acceptance`: see tests/api/conftest.py).

Path parameters are either generated or the id of a real object of tenant A (its project, job,
dataset, model, invoice, …), so that operations run on real rows too, by A's key (its own) and by
B's (another tenant's: never found). Each example runs in a savepoint that is rolled back: every
example starts from the same rows, so revoking the key that calls, deleting the project or
suspending the tenant is exercised without spoiling the examples after it.

The OpenAI-compatible routes under /v1/ are not in the document (OpenAI's own specification
describes them): tests/api/test_hostile_input.py covers their bad input.

VERTICALS_FUZZ_EXAMPLES sets the examples per operation (default 12: a minute or two on 2 cores).
"""

import os
import secrets

import pytest
import schemathesis
from django.db import transaction
from django.test import Client
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import ignored_auth

from tests.api.test_cross_tenant_probe import PARAM_FILLERS

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("VERTICALS_FUZZ_EXAMPLES", "12"))


@pytest.fixture
def principals(world_a, world_b):
    """How each caller authenticates (the two tenants' keys, and A's partner admin, whose console
    takes a session, with its CSRF token for writes), and tenant A's object ids by path parameter."""
    session = Client()
    session.force_login(world_a.partner_admin)
    csrf = secrets.token_hex(16)
    partner = {
        "headers": {"X-CSRFToken": csrf},
        "cookies": {"sessionid": session.cookies["sessionid"].value, "csrftoken": csrf},
        # That check sends the call again without the key it knows of; a session is no key.
        "excluded_checks": [ignored_auth],
    }
    return {
        "callers": {
            "a": {"headers": {"Authorization": f"Bearer {world_a.secret}"}},
            "b": {"headers": {"Authorization": f"Bearer {world_b.secret}"}},
            "a-partner-admin": partner,
        },
        "ids": {name: fill(world_a) for name, fill in PARAM_FILLERS.items()},
    }


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@schema.given(data=st.data())
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_the_api_answers_as_its_document_says(case, data, principals):
    # Real ids go only into paths generated as valid: a path generated invalid on purpose stays so.
    path = case.meta.components.get(ParameterLocation.PATH) if case.meta else None
    if path is not None and path.mode == GenerationMode.POSITIVE:
        for name in case.path_parameters:
            if name in principals["ids"] and data.draw(st.booleans(), label=f"{name}: tenant A's"):
                case.path_parameters[name] = principals["ids"][name]
    caller = principals["callers"][
        data.draw(st.sampled_from(sorted(principals["callers"])), label="caller")
    ]
    with transaction.atomic():
        try:
            case.call_and_validate(**caller)
        finally:
            transaction.set_rollback(True)
