"""Print pip constraints pinning the runtime libraries to their floors.

Reads ``pyproject.toml``: every ``name>=X`` of ``[project].dependencies``
and of the ``jwt`` extra, and ``sanic-ext`` wherever it is declared (a
hard dependency or an optional extra), becomes ``name==X``. The oldest-
versions job installs the dev extra under these constraints, so it tests
exactly what pyproject promises, and a floor raised there is tested
at once. Test tools stay unpinned: their age is not what is tested.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

FLOOR = re.compile(
    r"^\s*([A-Za-z0-9_.-]+)\s*(?:\[[^\]]*\])?\s*>=\s*([^,;\s]+)"
)


def main() -> int:
    """Print the constraints; 1 when a requirement has no floor."""
    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    extras: dict[str, list[str]] = project.get("optional-dependencies", {})
    wanted = list(project["dependencies"]) + list(extras.get("jwt", []))
    wanted += [
        req
        for reqs in extras.values()
        for req in reqs
        if req.lower().replace("_", "-").startswith("sanic-ext")
    ]
    pins: dict[str, str] = {}
    for req in wanted:
        match = FLOOR.match(req)
        if match is None:
            print(f"no floor (>=) in requirement {req!r}", file=sys.stderr)
            return 1
        name, version = match[1].lower().replace("_", "-"), match[2]
        pins[name] = version
    for name, version in sorted(pins.items()):
        print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
