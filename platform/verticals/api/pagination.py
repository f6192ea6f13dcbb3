from rest_framework.pagination import PageNumberPagination

from verticals.api.params import MAX_INT, whole_number


class Pagination(PageNumberPagination):
    """Pages of 50 (`page_size` up to 200). A `page` or `page_size` that is not a whole number in
    range is 400 naming it (not quietly the default page); a page past the last is 404."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_size(self, request):
        return whole_number(
            request.query_params.get(self.page_size_query_param),
            name=self.page_size_query_param,
            low=1,
            high=self.max_page_size,
            default=self.page_size,
        )

    def get_page_number(self, request, paginator):
        raw = request.query_params.get(self.page_query_param)
        if raw in self.last_page_strings:
            return paginator.num_pages
        return whole_number(raw, name=self.page_query_param, low=1, high=MAX_INT, default=1)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        bounds = {
            self.page_query_param: {"minimum": 1, "maximum": MAX_INT},
            self.page_size_query_param: {"minimum": 1, "maximum": self.max_page_size},
        }
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
        return parameters
