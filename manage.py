#!/usr/bin/env python
"""Django's command-line utility for Verticals."""

import os
import sys
from pathlib import Path


def main() -> None:
    # `platform/` is a source root, not a package: put it on the path (after the standard
    # library, so `import platform` stays the standard module) for runs without an install.
    source_root = str(Path(__file__).resolve().parent / "platform")
    if source_root not in sys.path:
        sys.path.append(source_root)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "verticals.config.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
