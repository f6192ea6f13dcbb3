"""Which paths belong to the machine-facing APIs (REST, OpenAI-compatible, Open Inference)."""

API_PREFIXES = ("/api/", "/v1/", "/v2/")


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIXES)
