from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "verticals.jobs"
    label = "jobs"
    verbose_name = "Jobs"

    def ready(self):
        from verticals.jobs import runners

        runners.import_runner_modules()
