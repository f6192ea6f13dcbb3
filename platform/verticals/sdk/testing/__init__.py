"""The plugin test kit: fixtures (a pytest plugin, loaded automatically once verticals is
installed) and the conformance suite every plugin runs against itself.

    # in a plugin's tests
    from verticals.sdk.testing import TaskConformance

    class TestMyTask(TaskConformance):
        task_name = "my-task"
"""

from verticals.sdk.testing.conformance import TaskConformance, local_splits

__all__ = ["TaskConformance", "local_splits"]
