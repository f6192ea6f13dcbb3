from django.apps import AppConfig


class NlpConfig(AppConfig):
    name = "nlp"
    label = "nlp"
    verbose_name = "NLP plugin"
    # The Plugin this app brings (a dotted path: torch is imported only when a task needs it).
    plugin = "nlp.plugin.NlpPlugin"
