"""The label schema in Label Studio's terms: the labeling config, the labels read back from one, the instructions."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from xml.etree import ElementTree
from xml.sax.saxutils import quoteattr

# The Image tag's default maxHeight is calc(100vh - 194px) (Label Studio's frontend, tags/object/Image): at
# 1400x900 that is 706 px of image, which pushes the caption and the choices below the fold. 55vh (495 px)
# leaves room for both under the image at that size.
IMAGE_MAX_HEIGHT = "55vh"


def build_label_config(
    labels: list[str], *, from_name: str = "label", to_name: str = "image", multiple: bool = False
) -> str:
    """A Label Studio config: the image (at most IMAGE_MAX_HEIGHT tall), its caption as text, and one
    single-choice over `labels` (`multiple`: a multiple choice, every label that applies; none = none of these)."""
    if not labels:
        raise ValueError("labels must not be empty")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be unique; got {labels}")
    choices = "\n".join(f"    <Choice value={quoteattr(str(label))}/>" for label in labels)
    kind = "multiple" if multiple else "single"
    return (
        "<View>\n"
        f'  <Image name={quoteattr(to_name)} value="$image" maxHeight="{IMAGE_MAX_HEIGHT}"/>\n'
        '  <Text name="caption_text" value="$caption"/>\n'
        f'  <Choices name={quoteattr(from_name)} toName={quoteattr(to_name)} choice="{kind}" showInLine="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>"
    )


def build_box_label_config(labels: list[str], *, from_name: str = "label", to_name: str = "image") -> str:
    """A Label Studio config for boxes: the image (at most IMAGE_MAX_HEIGHT tall) and RectangleLabels over
    `labels`. Rotation is off: a release keeps axis-aligned boxes, and an envelope of a turned box is looser."""
    if not labels:
        raise ValueError("labels must not be empty")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be unique; got {labels}")
    choices = "\n".join(f"    <Label value={quoteattr(str(label))}/>" for label in labels)
    return (
        "<View>\n"
        f'  <Image name={quoteattr(to_name)} value="$image" maxHeight="{IMAGE_MAX_HEIGHT}"/>\n'
        f'  <RectangleLabels name={quoteattr(from_name)} toName={quoteattr(to_name)} canRotate="false" '
        'showInline="true">\n'
        f"{choices}\n"
        "  </RectangleLabels>\n"
        "</View>"
    )


def config_labels(label_config: str) -> list[str]:
    """The Choice values (or, in a boxes config, the Label values) of a Label Studio config, in config order
    (empty when it has none)."""
    if not label_config.strip():
        return []
    root = ElementTree.fromstring(label_config)
    return [
        str(tag.get("value")) for tag in root.iter() if tag.tag in ("Choice", "Label") and tag.get("value") is not None
    ]


def build_instructions(
    labels: Sequence[str],
    definitions: Mapping[str, str],
    examples: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """The project's labeling instructions (HTML) from the label schema: each label with its definition and
    example images, in label order. A label without a definition raises ValueError: an annotator shown a
    bare class name guesses, and guesses disagree."""
    missing = [label for label in labels if not (definitions.get(label) or "").strip()]
    if missing:
        raise ValueError(f"labels without a definition: {missing}")
    examples = examples or {}
    parts = ["<h3>Choose the one label that fits the image</h3>", "<dl>"]
    for label in labels:
        parts.append(f"<dt><b>{html.escape(label)}</b></dt>")
        parts.append(f"<dd>{html.escape(definitions[label])}")
        urls = list(examples.get(label) or [])
        if urls:
            images = "".join(
                f'<img src="{html.escape(url, quote=True)}" alt="{html.escape(label, quote=True)} example" '
                'style="max-height:120px;margin:4px"/>'
                for url in urls
            )
            parts.append(f"<div>{images}</div>")
        parts.append("</dd>")
    parts.append("</dl>")
    return "\n".join(parts)
