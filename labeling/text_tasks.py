"""Text classification in Label Studio's terms: the labeling config over a page's text, its tasks, pre-annotations."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

import pyarrow as pa

from labeling.studio_tasks import build_predictions

TEXT_TO_NAME = "text"
# Long pages are cut, not shown whole: Label Studio renders a Text tag as one DOM node, and a 100 kB page makes
# the labeling view scroll for minutes; a page's topic shows in its opening paragraphs. 4,000 characters is
# about 600 words (two screens at the default font). The cut ends at a word and says how much was left out.
MAX_SHOWN_CHARS = 4000


def build_text_label_config(labels: list[str], *, from_name: str = "label", to_name: str = TEXT_TO_NAME) -> str:
    """A Label Studio config for one class per text record: its title as a header, its text, one single choice
    over `labels`."""
    if not labels:
        raise ValueError("labels must not be empty")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be unique; got {labels}")
    choices = "\n".join(f"    <Choice value={quoteattr(str(label))}/>" for label in labels)
    return (
        "<View>\n"
        '  <Header value="$title"/>\n'
        f'  <Text name={quoteattr(to_name)} value="$text"/>\n'
        f'  <Choices name={quoteattr(from_name)} toName={quoteattr(to_name)} choice="single" showInLine="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>"
    )


def shown_text(text: str | None, limit: int = MAX_SHOWN_CHARS) -> str:
    """The text an annotator sees: whole when it fits in `limit` characters, else cut at the last word
    boundary before it, followed by a note of how many characters were left out."""
    text = text or ""
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    head = text[: cut if cut > limit // 2 else limit].rstrip()
    return f"{head} …\n\n[truncated for labeling: {len(head):,} of {len(text):,} characters shown]"


def build_text_tasks(
    table: pa.Table,
    *,
    priorities: dict[str, float] | None = None,
    predictions: pa.Table | None = None,
    labels: list[str] | None = None,
    model_version: str | None = None,
) -> list[dict]:
    """One Label Studio task per text row of `table` (data: text, title, record_id, url, page_url, priority;
    no media). With `predictions` (PREDICTION_SCHEMA, optionally a model_version column), `labels` and
    `model_version`, each task carries its record's predicted class inline as a Choices pre-annotation, as
    studio_tasks.build_tasks does for images."""
    missing = [c for c in ("record_id", "text") if c not in table.column_names]
    if missing:
        raise ValueError(f"table lacks columns {missing}")
    inline: dict[str, dict] = {}
    if predictions is not None:
        if labels is None or not (model_version or "model_version" in predictions.column_names):
            raise ValueError("inline predictions need labels and model_version")
        ids = predictions.column("record_id").to_pylist()
        fake_ids = {rid: i for i, rid in enumerate(ids)}
        for payload in build_predictions(fake_ids, predictions, labels, model_version, to_name=TEXT_TO_NAME):
            inline[ids[payload.pop("task")]] = payload
    n = table.num_rows

    def column(name: str) -> list:
        return table.column(name).to_pylist() if name in table.column_names else [None] * n

    kinds = column("kind")
    priorities = priorities or {}
    tasks = []
    names = ("record_id", "text", "title", "url", "page_url")
    rows = zip(*(column(name) for name in names), kinds, strict=True)
    for record_id, text, title, url, page_url, kind in rows:
        if kind not in (None, "text") or text is None:
            continue
        priority = priorities.get(record_id)
        task: dict = {
            "data": {
                "text": shown_text(text),
                "title": title or "",
                "record_id": record_id,
                "url": url or "",
                "page_url": page_url or "",
                "priority": None if priority is None else float(priority),
            }
        }
        if record_id in inline:
            task["predictions"] = [inline[record_id]]
        tasks.append(task)
    return tasks
