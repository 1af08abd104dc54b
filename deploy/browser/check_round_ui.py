"""Browser check of what a round's annotator and reviewer see, self-contained (no `make demo` needed).

Starts its own Label Studio (from .venv-ls and the template in .cache, on a free port, over a temporary data
dir), sets a project up as a round does (label config and instructions from the label schema, media served by
Local Files storage, the round tab first with the internal columns hidden, the review tab with the review fields
written into task data), then has headless Chromium at 1400x900 open it as a person would (check_round.mjs).
Exits non-zero unless every check passes; prints the measurements as JSON and leaves screenshots behind.

Usage, from the repository root (as a module, so it checks this checkout's code even where the venv's editable
install points at another one): .venv/bin/python -m deploy.browser.check_round_ui [--screenshots DIR], or
`make browser-check-round`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa

from corpus.store import DataRoot
from labeling.client import LabelStudioClient
from labeling.label_config import build_instructions, build_label_config
from labeling.review import GOLD_MISMATCH, LIKELY_MISLABELED, LOW_CONFIDENCE, REVIEW_SET_SCHEMA
from labeling.studio_tasks import attach_media, build_tasks, export_media
from labeling.views import (
    INTERNAL_DATA_FIELDS,
    REVIEW_DATA_FIELDS,
    REVIEW_VIEW,
    review_hidden_columns,
    review_task_fields,
    round_hidden_columns,
    round_view_title,
)
from pipelines.demo.label_studio_server import LabelStudioServer, ensure_template, find_free_port
from pipelines.demo.sample_images import draw_class, encode, make_rng

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LS_VENV = REPO / ".venv-ls"
LS_TEMPLATE = REPO / ".cache" / "label-studio-template"
# The same admin as corpus.settings' defaults and tests/conftest.py, so the shared template fits.
USER, PASSWORD, TOKEN = "admin@flywheel.local", "flywheel-admin", "flywheel-demo-token-0001"
LABELS = ["dots", "stripes", "checks", "sky"]
DEFINITIONS = {
    "dots": "round spots scattered over a plain background",
    "stripes": "parallel bands running across the picture",
    "checks": "a grid of alternating squares, like a chessboard",
    "sky": "a smooth gradient of sky colours, with or without clouds",
}
# Images of the shapes crawled pages give: a big landscape photo, a tall portrait (the worst case for the
# fold: its height is what the Image's maxHeight caps), a square and a small thumbnail.
SIZES = [(1600, 1200), (900, 1600), (800, 800), (320, 240), (1200, 800), (600, 900)]
ROUND_NUMBER = 1
# Review-set rows (REVIEW_SET_SCHEMA) for the first three records: one of each reason, one with two.
REVIEW_ROWS = [
    ("rec-0", "dots", 0.41, [LOW_CONFIDENCE]),
    ("rec-1", "stripes", 0.93, [GOLD_MISMATCH]),
    ("rec-2", "checks", 0.58, [LOW_CONFIDENCE, LIKELY_MISLABELED]),
]


def _pictures() -> pa.Table:
    rng = make_rng(7)
    rows = []
    for i, (w, h) in enumerate(SIZES):
        label = LABELS[i % len(LABELS)]
        img = draw_class(label, max(w, h), rng).crop((0, 0, w, h))
        rows.append(
            {
                "record_id": f"rec-{i}",
                "kind": "image",
                "mime": "image/jpeg",
                "image": encode(img, "JPEG"),
                "caption": f"A {w}x{h} picture from a crawled page",
                "page_url": f"https://example.org/page-{i}",
            }
        )
    return pa.Table.from_pylist(rows)


def set_up(client: LabelStudioClient, root: DataRoot) -> dict:
    """The project as a round leaves it, with its review tab as a closed round leaves it; the page paths."""
    project_id = client.ensure_project("Flywheel browser round check", build_label_config(LABELS))
    instructions = build_instructions(LABELS, DEFINITIONS)
    client.set_instructions(project_id, instructions)
    attach_media(client, root, project_id, settings=None)  # a local root needs no settings
    table = _pictures()
    media = export_media(root, table)
    priorities = {rid: 1.0 - i / 10 for i, rid in enumerate(table.column("record_id").to_pylist())}
    tasks = build_tasks(table, media, priorities=priorities)
    ids = client.import_tasks(project_id, tasks)
    task_ids = dict(zip(table.column("record_id").to_pylist(), ids, strict=True))
    # Two tabs made before the round's, as an older round and a person's own tab would be: the round tab must
    # still be the one the project opens on.
    client.ensure_view(project_id, "Older tab", [task_ids["rec-5"]])
    round_view = client.ensure_view(
        project_id,
        round_view_title(ROUND_NUMBER),
        sorted(task_ids[f"rec-{i}"] for i in range(4)),
        hidden_columns=round_hidden_columns(),
        first=True,
    )
    review = pa.Table.from_pylist(
        [{"record_id": r, "label": lab, "label_confidence": c, "reasons": rs} for r, lab, c, rs in REVIEW_ROWS],
        schema=REVIEW_SET_SCHEMA,
    )
    fields = review_task_fields(review)
    for record_id, values in fields.items():
        client.update_task_data(task_ids[record_id], values)
    review_view = client.ensure_view(
        project_id, REVIEW_VIEW, sorted(task_ids[r] for r in fields), hidden_columns=review_hidden_columns()
    )
    return {
        "projectPath": client.project_url(project_id).removeprefix(client.url),
        "projectId": project_id,
        "roundView": {"id": round_view, "title": round_view_title(ROUND_NUMBER)},
        "reviewView": {"id": review_view, "title": REVIEW_VIEW},
        "roundTaskId": task_ids["rec-1"],  # the tall portrait
        "hiddenFields": list(INTERNAL_DATA_FIELDS + REVIEW_DATA_FIELDS),
        "reviewFields": list(REVIEW_DATA_FIELDS),
        "reviewValues": {
            str(task_ids[r]): {
                "review_reasons": v["review_reasons"],
                "aggregated_label": v["aggregated_label"],
                "aggregated_confidence": str(v["aggregated_confidence"]),
            }
            for r, v in fields.items()
        },
        "labels": LABELS,
        "instructionSnippets": [DEFINITIONS[label] for label in LABELS],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshots", type=Path, default=REPO / "data" / "screenshots" / "round-ui")
    args = parser.parse_args(argv)
    if not (LS_VENV / "bin" / "label-studio").exists():
        print(f"Label Studio is not installed in {LS_VENV}: run `make venv` first", file=sys.stderr)
        return 2
    screenshots = args.screenshots.absolute()
    screenshots.mkdir(parents=True, exist_ok=True)
    template = ensure_template(LS_TEMPLATE, venv=LS_VENV, username=USER, password=PASSWORD, token=TOKEN)
    with tempfile.TemporaryDirectory(prefix="flywheel-browser-round-") as tmp:
        base = Path(tmp)
        (base / "root").mkdir()
        server = LabelStudioServer(
            base / "ls-data",
            venv=LS_VENV,
            port=find_free_port(),
            document_root=base / "root",
            username=USER,
            password=PASSWORD,
            token=TOKEN,
            log_path=base / "label-studio.log",
            template=template,
        )
        with server:
            client = LabelStudioClient(server.url, TOKEN)
            config = set_up(client, DataRoot(str(base / "root")))
            config.update(labelStudio=server.url, user=USER, password=PASSWORD, screenshots=str(screenshots))
            done = subprocess.run(["node", str(HERE / "check_round.mjs"), json.dumps(config)], cwd=HERE, timeout=600)
    print(f"screenshots: {screenshots}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
