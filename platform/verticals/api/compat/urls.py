"""OpenAI-compatible routes under /v1/ (see verticals.api.compat.openai)."""

from django.urls import path

from verticals.api.compat import openai

app_name = "openai"

urlpatterns = [
    path("models", openai.ModelList.as_view(), name="models"),
    path("models/<str:model>", openai.ModelDetail.as_view(), name="model"),
    path("chat/completions", openai.ChatCompletions.as_view(), name="chat-completions"),
    path("completions", openai.Completions.as_view(), name="completions"),
]
