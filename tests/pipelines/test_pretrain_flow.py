"""The pretrain flow against a real Prefect server and Label Studio: an encoder pretrained on the pool, then a
cold-start round chosen by TypiClust over its embeddings, and a model's hybrid round measuring diversity there;
each round records the embeddings that chose it."""

from __future__ import annotations

import pyarrow as pa
import pytest
from labeled_pools import make_labeled_pool

from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.store import DataRoot
from labeling.round_store import load_round
from pipelines.config import LabelRoundParams, PretrainParams
from pipelines.pretrain import pretrain_flow
from pipelines.round_markdown import progress_markdown
from pipelines.rounds import describe_round, label_push_flow
from training.config import TrainConfig
from training.encoders import newest_embeddings, read_encoder_metadata
from training.predict import predict_pool
from training.simclr import SimCLRConfig
from training.train import train_model

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
    # The round records the embeddings that chose it; `flywheel label status` and its artifact show them.
    assert round_.embeddings == opened["embeddings"] == "simclr-0001"
    assert describe_round(root.url, "cold")["embeddings"] == "simclr-0001"
    assert "| embeddings | simclr-0001 |" in progress_markdown(round_)

    # A model trained on the pool's labels (its url names its colour) scores the pool: the next round is hybrid,
    # its diversity measured over the encoder's embeddings, which cover the pool.
    records = root.read_table(pool)
    colours = [url.split("/")[3] for url in records.column("url").to_pylist()]
    labeled = records.set_column(records.schema.get_field_index("label"), "label", pa.array(colours, pa.string()))
    build_release(root, "warm", labeled, ReleaseConfig(eval_set_size=4))
    tiny = TrainConfig(image_size=32, epochs=1, batch_size=8, width=8, num_workers=0, device="cpu")
    trained = train_model(root, "warm", cfg=tiny)
    predict_pool(root, trained["model_version"], records, device="cpu")
    warm = label_push_flow(params.model_copy(update={"dataset": "warm", "budget": 4}))
    second = load_round(root, "warm", 1)
    assert warm["strategy"] == second.strategy == "hybrid" and second.model_version == trained["model_version"]
    assert second.embeddings == warm["embeddings"] == "simclr-0001"
    assert describe_round(root.url, "warm")["embeddings"] == "simclr-0001"
