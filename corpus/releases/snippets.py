"""How to load a release: the short pandas, Hugging Face `datasets` and torch snippets on the card and README."""

from __future__ import annotations

import json


def render_load_snippets(path: str, labels: list[str]) -> dict[str, str]:
    """Python snippets ({"pandas", "datasets", "torch"}) that load the release folder at `path`.

    `labels` is the release's ordered label list (index -> name, the order models use). Each snippet runs as
    it is, with only its library installed; tests run them against a real release.
    """
    remote = "://" in path
    pandas = f'import pandas as pd\n\ntrain = pd.read_parquet("{path}/train.parquet")  # one row per record\n'
    if remote:
        datasets = (
            "from datasets import load_dataset\n\n"
            f'files = {{s: "{path}/" + f + ".parquet" for s, f in [("train", "train"), ("validation", "val"), '
            '("test", "test")]}\n'
            'ds = load_dataset("parquet", data_files=files)  # pass storage_options=... for credentials\n'
        )
    else:
        datasets = (
            "from datasets import load_dataset\n\n"
            f'ds = load_dataset("{path}")  # splits: train, validation, test\n'
            "# with Image + ClassLabel features: `flywheel export D@vN --format hf --to DIR`, load_dataset(DIR)\n"
        )
    torch = (
        "import io\n\nimport pyarrow.parquet as pq\nimport torch\nfrom PIL import Image\n\n"
        f"LABELS = {json.dumps(labels)}  # index -> name, as the manifest's `labels`\n\n\n"
        "class ReleaseSplit(torch.utils.data.Dataset):\n"
        "    def __init__(self, path):\n"
        '        rows = pq.read_table(path, columns=["image", "label"]).to_pylist()\n'
        '        self.rows = [r for r in rows if r["image"] is not None]  # text records have no image\n\n'
        "    def __len__(self):\n        return len(self.rows)\n\n"
        "    def __getitem__(self, i):\n"
        "        row = self.rows[i]\n"
        '        return Image.open(io.BytesIO(row["image"])).convert("RGB"), LABELS.index(row["label"])\n\n\n'
        f'train = ReleaseSplit("{path}/train.parquet")\n'
    )
    return {"pandas": pandas, "datasets": datasets, "torch": torch}
