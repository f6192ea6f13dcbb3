"""Text no database column can hold is refused where a request comes in, naming where it was.

PostgreSQL's text and jsonb refuse the NUL character (SQLite stores it), so a NUL that reached a
lookup, a filter or a row would be a server error on one database and a quiet oddity on the other.
It is checked once, before any view reads the request: path parameters, query parameters and
cookies by `RefuseNulMiddleware` (every route, the portal's too), and every parsed API body by the
parsers of every API view (`refusing_nul`, applied in `verticals.api.base.CallerMixin`).
"""

from __future__ import annotations

from functools import cache

from django.core.exceptions import BadRequest
from django.utils.datastructures import MultiValueDict
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import DataAndFiles

from verticals.api.errors import error_response
from verticals.config.paths import is_api_path

NUL = "\x00"
# Django's and DRF's own words for the same refusal (their CharFields say it too).
NUL_PROBLEM = "Null characters are not allowed."


def nul_field(value, name: str = "") -> str | None:
    """Where the first string in `value` holding a NUL is (`params.model`, `messages[0].content`,
    a query parameter's name), "" for `value` itself, or None when there is none.

    Walks with its own stack: a body nested as deep as the JSON parser allows costs no recursion."""
    stack = [(name, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if NUL in item:
                return where
        elif isinstance(item, MultiValueDict):  # query parameters, form fields: named without [index]
            for key, values in item.lists():
                if NUL in key or any(isinstance(v, str) and NUL in v for v in values):
                    return _join(where, key)
        elif isinstance(item, dict):
            inner = []
            for key, child in item.items():
                path = _join(where, str(key))
                if NUL in str(key):
                    return path
                inner.append((path, child))
            stack.extend(reversed(inner))
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed([(f"{where}[{index}]", child) for index, child in enumerate(item)]))
    return None


def _join(where: str, key: str) -> str:
    return (f"{where}.{key}" if where else key).replace(NUL, "\\u0000")


def refusal(where: str) -> dict:
    """The validation details of a NUL found at `where` (the body itself: non_field_errors)."""
    return {where or "non_field_errors": [NUL_PROBLEM]}


class RefusesNul:
    """A parser mixin: what the parser read is refused (400, naming the field) when any text in it,
    a key, a value or an uploaded file's name, holds a NUL; JSON nested deeper than Python's
    parser can follow is a parse error, not a server error."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            parsed = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("The body is nested deeper than this server reads; send a flatter document.") from None
        data, files = (parsed.data, parsed.files) if isinstance(parsed, DataAndFiles) else (parsed, None)
        where = nul_field(data)
        if where is None and files:
            where = next((field for field, upload in files.items() if NUL in (upload.name or "")), None)
        if where is not None:
            raise ValidationError(refusal(where))
        return parsed


@cache
def refusing_nul(parser_class: type) -> type:
    """`parser_class` with `RefusesNul` in front (the same class name, and still an instance of the
    original: DRF reads JSON and form bodies through `request.body`, bounded, only for those)."""
    if issubclass(parser_class, RefusesNul):
        return parser_class
    return type(parser_class.__name__, (RefusesNul, parser_class), {"__doc__": parser_class.__doc__})


class RefuseNulMiddleware:
    """Path parameters, query parameters and cookies that hold a NUL: 400 naming the parameter,
    before any view, lookup or session read sees them (in the API's shape under the API's paths)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        where = nul_field(request.GET)
        if where is None:
            cookie = nul_field(request.COOKIES)
            where = f"cookie {cookie}" if cookie is not None else None
        if where is not None:
            return self.refuse(request, where)
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        where = nul_field({str(key): value for key, value in view_kwargs.items()})
        if where is None and any(isinstance(arg, str) and NUL in arg for arg in view_args):
            where = "path"
        return None if where is None else self.refuse(request, where)

    @staticmethod
    def refuse(request, where: str):
        message = f"{where}: {NUL_PROBLEM}"
        if not is_api_path(request.path):
            raise BadRequest(message)  # the portal's own 400 page
        return error_response(request, 400, "invalid", message, refusal(where))
