"""The data card: card.html of a release, plain HTML with inline SVG charts and thumbnails (works offline)."""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from corpus.releases.evalset import COUNTED_NOTES, SCORE_COLUMNS, eval_set_note
from corpus.releases.snippets import render_load_snippets
from corpus.schema import SPLITS
from corpus.tasks import task_of


def _thumbnail(data: bytes | None, px: int) -> str | None:
    """A base64 JPEG data URI of an image, or None when it cannot be decoded."""
    if not data:
        return None
    from PIL import Image  # Pillow only for the card; imported here so the split logic never needs it

    try:
        with Image.open(io.BytesIO(data)) as img:
            img = img.convert("RGB")
            img.thumbnail((px, px))
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=80)
    except Exception:  # any undecodable image is simply left off the card
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


_SPLIT_COLOURS = {"train": "#4c78a8", "val": "#f58518", "test": "#54a24b"}


def _svg_bars(groups: list[str], series: dict[str, list[int]], colours: dict[str, str], title: str) -> str:
    """A grouped bar chart as inline SVG: one group per entry of `groups`, one bar per series."""
    esc = html.escape
    width_bar, gap, height, left, bottom = 14, 18, 160, 40, 40
    n_series = max(len(series), 1)
    group_w = n_series * width_bar + gap
    width = left + max(len(groups), 1) * group_w + 20
    top = max([v for vals in series.values() for v in vals] + [1])
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + bottom + 30}" '
        f'role="img" aria-label="{esc(title)}"><title>{esc(title)}</title>',
        f'<line x1="{left}" y1="{height + 10}" x2="{width}" y2="{height + 10}" stroke="#888"/>',
        f'<text x="{left - 4}" y="18" font-size="10" text-anchor="end">{top}</text>',
    ]
    for gi, g in enumerate(groups):
        x0 = left + gi * group_w
        for si, (name, vals) in enumerate(series.items()):
            v = vals[gi]
            h = round(height * v / top)
            x = x0 + si * width_bar
            parts.append(
                f'<rect x="{x}" y="{height + 10 - h}" width="{width_bar - 2}" height="{h}" '
                f'fill="{colours.get(name, "#888")}"><title>{esc(g)} · {esc(name)}: {v}</title></rect>'
            )
        label_x = x0 + n_series * width_bar / 2
        parts.append(f'<text x="{label_x}" y="{height + 24}" font-size="10" text-anchor="middle">{esc(g[:14])}</text>')
    for si, name in enumerate(series):
        parts.append(
            f'<rect x="{left + si * 70}" y="{height + bottom + 4}" width="10" height="10" '
            f'fill="{colours.get(name, "#888")}"/><text x="{left + si * 70 + 14}" y="{height + bottom + 13}" '
            f'font-size="10">{esc(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _table_html(rows: list[tuple[str, Any]]) -> str:
    esc = html.escape
    body = "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>" if rows else "<p><i>none</i></p>"


def _balance_section(manifest: dict, labels: list[str]) -> str:
    """Class balance: the bar chart and the label x split table with totals."""
    esc = html.escape
    counts = manifest["class_counts"]
    head = "".join(f"<th>{esc(s)}</th>" for s in SPLITS)
    rows = []
    for lab in labels:
        cells = "".join(f"<td>{counts[s].get(lab, 0)}</td>" for s in SPLITS)
        rows.append(f"<tr><th>{esc(lab)}</th>{cells}</tr>")
    totals = "".join(f"<td><b>{manifest['rows'][s]}</b></td>" for s in SPLITS)
    rows.append(f"<tr><th>total</th>{totals}</tr>")
    balance_svg = _svg_bars(
        labels,
        {s: [counts[s].get(lab, 0) for lab in labels] for s in SPLITS},
        _SPLIT_COLOURS,
        "class balance per split",
    )
    return f"{balance_svg}<table><tr><th>label</th>{head}</tr>{''.join(rows)}</table>"


def _carrying(table: pa.Table, label: str) -> pa.Array:
    """Which rows carry `label`: their one label, or for multi-label rows (a `labels` set) their set holds it."""
    if "labels" in table.column_names and table.column("labels").null_count < table.num_rows:
        return pa.array([label in (chosen or []) for chosen in table.column("labels").to_pylist()], pa.bool_())
    return pc.equal(table.column("label"), label)


def _thumbs_section(splits: dict[str, pa.Table], labels: list[str], per_class: int, px: int) -> str:
    """Up to `per_class` thumbnails of each label, taken from train first, then val and test."""
    esc = html.escape
    thumbs = []
    for lab in labels:
        imgs: list[str] = []
        for s in SPLITS:
            t = splits[s]
            if len(imgs) >= per_class or t.num_rows == 0:
                continue
            sub = t.filter(_carrying(t, lab))
            for data in sub.column("image").to_pylist():
                if len(imgs) >= per_class:
                    break
                uri = _thumbnail(data, px)
                if uri:
                    imgs.append(f'<img src="{uri}" alt="{esc(lab)}">')
        thumbs.append(f"<div class='cls'><h3>{esc(lab)}</h3>{''.join(imgs) or '<i>no images</i>'}</div>")
    return "".join(thumbs)


# A card shows each text example's opening: enough to see what a class looks like, short enough for a page.
TEXT_PREVIEW_CHARS = 240


def _text_previews(splits: dict[str, pa.Table], labels: list[str], per_class: int) -> str:
    """Up to `per_class` text examples of each label (title and opening), from train first, then val and test."""
    esc = html.escape
    parts = []
    for lab in labels:
        items: list[str] = []
        for s in SPLITS:
            t = splits[s]
            if t.num_rows == 0:
                continue
            sub = t.filter(pc.fill_null(pc.equal(t.column("label"), lab), False))
            for row in sub.select(["title", "text"]).to_pylist()[: per_class - len(items)]:
                text = row["text"] or ""
                cut = text[:TEXT_PREVIEW_CHARS] + ("…" if len(text) > TEXT_PREVIEW_CHARS else "")
                items.append(f"<li><b>{esc(row['title'] or '')}</b> {esc(cut)}</li>")
        parts.append(f"<div class='cls'><h3>{esc(lab)}</h3><ul>{''.join(items) or '<i>no texts</i>'}</ul></div>")
    return "".join(parts)


def _diff_section(diff: dict[str, Any]) -> str:
    """Changes since the parent: the counts, the per-label bar chart and the relabel pairs."""
    rows = [(k, diff[k]) for k in ("added", "removed", "relabelled", "moved")]
    by_label = diff["by_label"]
    diff_labels = sorted(by_label)
    diff_svg = _svg_bars(
        diff_labels,
        {k: [by_label[lab].get(k, 0) for lab in diff_labels] for k in ("added", "removed", "relabelled_in")},
        {"added": "#54a24b", "removed": "#e45756", "relabelled_in": "#eeca3b"},
        "changes since parent per label",
    )
    return f"{_table_html(rows)}{diff_svg}\n<h3>Relabelled</h3>{_table_html(list(diff['relabel_pairs'].items()))}"


def _labels_section(manifest: dict) -> str:
    """Label provenance: source mix, annotator agreement (ours and the one reported by labeling), confidence."""
    mix = [(k, f"{v} ({manifest['label_source_share'].get(k, 0):.0%})") for k, v in manifest["label_sources"].items()]
    agreement = manifest["agreement"]
    agree_rows = [(k, v) for k, v in agreement.items() if k != "annotators"]
    reported = agreement.get("annotators")
    if isinstance(reported, dict):
        agree_rows += [(f"annotators: {k}", v) for k, v in reported.items()]
    elif reported is not None:
        agree_rows.append(("annotators", reported))
    hist = manifest["confidence_histogram"]
    edges = [f"{i / hist['bins']:.1f}" for i in range(hist["bins"])]
    conf_svg = _svg_bars(edges, {"labels": hist["counts"]}, {"labels": "#72b7b2"}, "label confidence histogram")
    return (
        f"<h3>Sources</h3>{_table_html(mix)}\n<h3>Annotator agreement</h3>{_table_html(agree_rows)}\n"
        f"<h3>Label confidence (vote share; low = doubtful)</h3>{conf_svg}"
    )


def _fmt_score(value: Any) -> str:
    return "—" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _score_row(row: dict[str, Any], columns: tuple[tuple[str, str], ...]) -> str:
    """One model's row of the per-version table: its figures, or why it could not be scored."""
    esc = html.escape
    if row.get("error"):
        cells = f"<td colspan={len(columns) + 1}>not scored: {esc(row['error'])}</td>"
    else:
        cells = "".join(f"<td>{_fmt_score(row.get(key))}</td>" for key, _ in columns)
        cells += f"<td>{_fmt_score(row.get('n'))}</td>"
    return f"<tr><th>{esc(str(row.get('release')))}</th><td>{esc(str(row.get('model_version')))}</td>{cells}</tr>"


def _eval_section(manifest: dict) -> str:
    """The fixed evaluation set (size, since, frozen or growing, what it holds per label) and the scores of the
    models of earlier versions on exactly these items, side by side, in the figures of the release's task type."""
    esc = html.escape
    eval_set = manifest.get("eval_set")
    if not eval_set:
        return "<p><i>no fixed evaluation set: this release predates them</i></p>"
    counted = eval_set.get("counted", "items")  # sets written before per-task counts counted items
    counts = ", ".join(f"{k}: {v}" for k, v in eval_set["class_counts"].items())
    empty = {"labels": "items with none of the labels", "boxes": "images with no box"}.get(counted)
    rows = [
        ("items", f"{eval_set['size']} (target {eval_set['target']})"),
        ("since", eval_set["since"]),
        ("id", eval_set["id"]),
        (COUNTED_NOTES[counted], counts),
        *([(empty, eval_set.get("no_answer", 0))] if empty else []),
    ]
    columns = SCORE_COLUMNS[task_of(manifest)]
    scores = manifest.get("eval_scores") or []
    head = "".join(f"<th>{esc(title)}</th>" for _, title in columns)
    head = f"<tr><th>release</th><th>model</th>{head}<th>items</th></tr>"
    body = "".join(_score_row(r, columns) for r in scores)
    table = f"<table>{head}{body}</table>" if scores else "<p><i>no model of an earlier version yet</i></p>"
    return (
        f"<p>{esc(eval_set_note(eval_set))}.</p>{_table_html(rows)}"
        f"<h3>Models of earlier versions on this evaluation set</h3>{table}"
    )


def _integrity_section(leaks: dict[str, Any]) -> str:
    esc = html.escape
    reason = "; " + esc(leaks["examples"][0]["reason"]) if leaks["examples"] else ""
    return (
        f'<p class="{"warn" if leaks["groups"] else ""}">groups straddling splits: {leaks["groups"]}\n'
        f"({leaks['rows']} rows){reason}</p>"
    )


def _curation_section(cur: dict[str, Any]) -> str:
    rows = [
        (k, ", ".join(f"{a}: {b}" for a, b in v.items()) if isinstance(v, dict) else v)
        for k, v in cur.items()
        if k != "pii_entities"
    ]
    pii_rows = list(cur["pii_entities"].items()) or [("entities found", 0)]
    return f"{_table_html(rows)}<h3>PII found (before scrubbing)</h3>{_table_html(pii_rows)}"


def _built_by_rows(code: dict[str, Any]) -> list[tuple[str, Any]]:
    rows = [("commit", code.get("commit")), ("dirty", code.get("dirty")), ("python", code.get("python"))]
    return rows + list(code.get("packages", {}).items())


_STYLE = """<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:70em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f4f4f4}.cls{margin:1em 0}.cls img{margin:2px;border:1px solid #ddd}
pre{background:#f8f8f8;padding:8px;overflow:auto}.warn{color:#a00}
</style>"""


def _about_section(manifest: dict) -> str:
    """Description, licence, the ordered label list and the sources (manifest format 4; absent keys are skipped)."""
    esc = html.escape
    labels = manifest.get("labels")
    rows = [("licence", manifest.get("licence") or "not stated")]
    if labels is not None:
        rows.append(("labels (index: name)", ", ".join(f"{i}: {lab}" for i, lab in enumerate(labels))))
    rows += [(f"source {s['source']}", f"{s['rows']} rows") for s in manifest.get("sources", [])]
    description = f"<p>{esc(manifest['description'])}</p>" if manifest.get("description") else ""
    return f"{description}{_table_html(rows)}"


def _loading_section(path: str | None, labels: list[str]) -> str:
    """How to load the release at `path`: pandas, Hugging Face `datasets` and torch snippets."""
    if not path:
        return "<p><i>path unknown</i></p>"
    snippets = render_load_snippets(path, labels)
    return "".join(f"<h3>{html.escape(name)}</h3><pre>{html.escape(code)}</pre>" for name, code in snippets.items())


def render_card(
    manifest: dict, splits: dict[str, pa.Table], *, thumbs_per_class: int, thumb_px: int, path: str | None = None
) -> str:
    """card.html of a release from its manifest (before "files") and its split tables (for thumbnails); `path`
    (the release folder's URL) goes into the "How to load" snippets."""
    esc = html.escape
    labels = sorted({lab for counts in manifest["class_counts"].values() for lab in counts})
    extra = esc(json.dumps(manifest.get("extra", {}), indent=2, sort_keys=True, default=str))
    recipe = esc(json.dumps(manifest["augmentation"], indent=2))
    title = f"{esc(manifest['dataset'])} {esc(manifest['version'])}"
    if manifest.get("task") == "text":
        examples = _text_previews(splits, labels, thumbs_per_class)
    else:
        examples = _thumbs_section(splits, labels, thumbs_per_class, thumb_px)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
{_STYLE}</head><body>
<h1>{title}</h1>
<p>parent: {esc(str(manifest["parent"]))} &middot; created {esc(manifest["created_at"])} &middot;
code {esc(manifest["code_version"])} &middot; schema v{esc(manifest["schema_version"])} &middot;
release id <code>{esc(manifest["release_id"])}</code></p>
<h2>About</h2>{_about_section(manifest)}
<h2>How to load</h2>{_loading_section(path, manifest.get("labels", labels))}
<h2>Class balance</h2>{_balance_section(manifest, labels)}
<h2>Changes since parent</h2>{_diff_section(manifest["diff"])}
<h2>Labels</h2>{_labels_section(manifest)}
<h2>Fixed evaluation set</h2>{_eval_section(manifest)}
<h2>Split integrity</h2>
{_integrity_section(manifest["split_leaks"])}
<h2>Curation and privacy</h2>{_curation_section(manifest["curation"])}
<h2>Examples</h2>{examples}
<h2>Augmentation recipe</h2><pre>{recipe}</pre>
<h2>Built by</h2>{_table_html(_built_by_rows(manifest["code"]))}
<h2>Extra</h2><pre>{extra}</pre>
</body></html>
"""
