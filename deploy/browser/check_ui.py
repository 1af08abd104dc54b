"""Browser check after `make demo`: a real Chromium opens a pushed task in Label Studio and the newest card."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from corpus.releases.versions import list_releases
from corpus.settings import get_settings
from corpus.store import DataRoot
from labeling.client import LabelStudioClient

HERE = Path(__file__).resolve().parent


def main(project_title: str = "Flywheel demo", dataset: str = "demo") -> int:
    settings = get_settings()
    token = settings.label_studio_token.get_secret_value()
    client = LabelStudioClient(settings.label_studio_base_url, token)
    project_id = client.find_project(project_title)
    if project_id is None:
        print(f"no Label Studio project {project_title!r}: run `make demo` first", file=sys.stderr)
        return 2
    tasks = client.list_tasks(project_id)
    root = DataRoot(settings.data_root)
    versions = list_releases(root, dataset)
    if not tasks or not versions:
        print("the demo has no tasks or releases yet: run `make demo` first", file=sys.stderr)
        return 2
    screenshots = Path(root.local_path("demo/screenshots"))
    screenshots.mkdir(parents=True, exist_ok=True)
    config = {
        "labelStudio": settings.label_studio_base_url,
        "user": settings.label_studio_user,
        "password": settings.label_studio_password.get_secret_value(),
        "taskPath": f"/projects/{project_id}/data?tab=0&task={tasks[0]['id']}",
        "cardPath": root.local_path(f"releases/{dataset}/{versions[-1]}/card.html"),
        "screenshots": str(screenshots),
    }
    done = subprocess.run(["node", str(HERE / "check.mjs"), json.dumps(config)], cwd=HERE, timeout=300)
    print(f"screenshots: {screenshots}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
