"""The pretrain flow against a real Prefect server and Label Studio: an encoder pretrained on the pool, then a
cold-start round chosen by TypiClust over its embeddings."""

from __future__ import annotations

import pytest
from labeled_pools import make_labeled_pool

from corpus.store import DataRoot
from labeling.round_store import load_round
from pipelines.config import LabelRoundParams, PretrainParams
from pipelines.pretrain import pretrain_flow
from pipelines.rounds import label_push_flow
from training.encoders import newest_embeddings, read_encoder_metadata
from training.simclr import SimCLRConfig

pytestmark = [pytest.mark.labelstudio, pytest.mark.prefect]
TINY = SimCLRConfig(epochs=1, image_size=32, batch_size=16, width=8, device="cpu")


def test_pretraining_on_the_pool_makes_the_first_round_typiclust(studio) -> None:
    root = DataRoot(str(studio.document_root))
    pool = make_labeled_pool(root, per_class=6, annotated=False)
    made = pretrain_flow(PretrainParams(pool=pool, simclr=TINY, data_root=root.url))
    assert made["encoder_version"] == "simclr-0001" and made["path"].endswith("encoders/simclr-0001")
    meta = read_encoder_metadata(root, "simclr-0001")
    assert meta["method"] == "simclr" and meta["pool"] == pool and meta["n_images"] == 24
    _, embeddings = newest_embeddings(root)
    assert embeddings.num_rows == 24

    params = LabelRoundParams(
        dataset="cold",
        pool=pool,
        labels=["red", "green", "blue", "gray"],
        budget=6,
        gold_per_round=0,
        min_per_class=0,
        data_root=root.url,
        annotators=1,
    )
    opened = label_push_flow(params)
    assert opened["opened"] and opened["tasks"] == 6
    round_ = load_round(root, "cold", 1)
    assert round_.strategy == "typiclust" and round_.model_version is None
    assert set(round_.record_ids) <= set(embeddings.column("record_id").to_pylist())
