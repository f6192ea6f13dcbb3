"""The NLP domain plugin: text tasks (sentiment; text generation comes next)."""
