"""Values no database column can hold are refused where a request comes in, naming where they were.

PostgreSQL's text and jsonb refuse the NUL character (SQLite stores it), neither database can
encode a lone UTF-16 surrogate (JSON's "\\ud800" decodes to one), and jsonb has no infinity (JSON's
1e400 reads as one), so such a value reaching a lookup, a filter or a row would be a server error.
It is checked once, before any view reads the request: path parameters, query parameters and
cookies by `UnstorableInputMiddleware` (every route, the portal's too), and every parsed API body
by the parsers of every API view (`refusing_unstorable`, applied in `verticals.api.base.CallerMixin`).
"""

from __future__ import annotations

import math
import re
from functools import cache

from django.core.exceptions import BadRequest
from django.utils.datastructures import MultiValueDict
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import DataAndFiles

from verticals.api.errors import error_response
from verticals.tenancy.paths import is_api_path

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Django's and DRF's own words (their CharFields refuse the same).
NUL_PROBLEM = "Null characters are not allowed."
SURROGATE_PROBLEM = "Surrogate characters are not allowed: U+{code:04X}."
INFINITE_PROBLEM = "This number is too large to store (it reads as infinity); send a finite number."


def _problem(text: str) -> str | None:
    found = UNSTORABLE.search(text)
    if found is None:
        return None
    return (
        NUL_PROBLEM
        if found.group() == "\x00"
        else SURROGATE_PROBLEM.format(code=ord(found.group()))
    )


def unstorable(value, name: str = "") -> tuple[str, str] | None:
    """(where, problem) for the first text or number in `value` no database can hold, or None.

    `where` names it as a client wrote it: `params.model`, `messages[0].content`, a query
    parameter's name; "" is `value` itself. Walks with its own stack: a body nested as deep as the
    JSON parser allows costs no recursion."""
    stack = [(name, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if problem := _problem(item):
                return where, problem
        elif isinstance(item, float):
            if not math.isfinite(item):
                return where, INFINITE_PROBLEM
        elif isinstance(
            item, MultiValueDict
        ):  # query parameters, form fields: named without [index]
            for key, values in item.lists():
                for text in (key, *(v for v in values if isinstance(v, str))):
                    if problem := _problem(text):
                        return _join(where, key), problem
        elif isinstance(item, dict):
            inner = []
            for key, child in item.items():
                path = _join(where, str(key))
                if problem := _problem(str(key)):
                    return path, problem
                inner.append((path, child))
            stack.extend(reversed(inner))
        elif isinstance(item, (list, tuple)):
            stack.extend(
                reversed([(f"{where}[{index}]", child) for index, child in enumerate(item)])
            )
    return None


def _join(where: str, key: str) -> str:
    """A dotted path, the offending characters of a key written as escapes (a message must hold them)."""
    path = f"{where}.{key}" if where else key
    return UNSTORABLE.sub(lambda found: f"\\u{ord(found.group()):04x}", path)


def refusal(where: str, problem: str) -> dict:
    """The validation details of unstorable text at `where` (the body itself: non_field_errors)."""
    return {where or "non_field_errors": [problem]}


class RefusesUnstorable:
    """A parser mixin: what the parser read is refused (400, naming the field) when any value in
    it, a key, a value or an uploaded file's name, is one no database holds; JSON nested deeper
    than Python's parser follows is a parse error, not a server error."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            parsed = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(
                "The body is nested deeper than this server reads; send a flatter document."
            ) from None
        data, files = (
            (parsed.data, parsed.files) if isinstance(parsed, DataAndFiles) else (parsed, None)
        )
        found = unstorable(data)
        if found is None and files:
            found = next(
                (
                    (field, problem)
                    for field, upload in files.items()
                    if (problem := _problem(upload.name or ""))
                ),
                None,
            )
        if found is not None:
            raise ValidationError(refusal(*found))
        return parsed


@cache
def refusing_unstorable(parser_class: type) -> type:
    """`parser_class` with `RefusesUnstorable` in front (the same class name, and still an
    instance of the original: DRF reads JSON and form bodies through `request.body`, within
    DATA_UPLOAD_MAX_MEMORY_SIZE, only for those)."""
    if issubclass(parser_class, RefusesUnstorable):
        return parser_class
    return type(
        parser_class.__name__, (RefusesUnstorable, parser_class), {"__doc__": parser_class.__doc__}
    )


class UnstorableInputMiddleware:
    """Path parameters, query parameters and cookies holding text no database holds: 400 naming
    the parameter, before any view, lookup or session read sees them (in the API's error shape
    under the API's paths, the portal's 400 page elsewhere)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        found = unstorable(request.GET)
        if found is None and (cookie := unstorable(request.COOKIES)) is not None:
            found = (f"cookie {cookie[0]}", cookie[1])
        if found is not None:
            return self.refuse(request, *found)
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        found = unstorable({str(key): value for key, value in view_kwargs.items()})
        if found is None:
            found = unstorable(list(view_args), "path")
        return None if found is None else self.refuse(request, *found)

    @staticmethod
    def refuse(request, where: str, problem: str):
        message = f"{where}: {problem}"
        if not is_api_path(request.path):
            raise BadRequest(message)
        return error_response(request, 400, "invalid", message, refusal(where, problem))
