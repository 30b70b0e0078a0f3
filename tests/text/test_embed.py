"""The embed stage on a real lake: texts encoded offline in the executors, cached by content hash."""
import json
import os
import subprocess
import sys

import jobs.embed
import jobs.items
import numpy as np
import pytest

from lakerec import tables as T
from lakerec.lake import Lake
from lakerec.text.embeddings import embedding_matrix, read_item_embeddings
from tests.etl.conftest import etl_cfg, run_job

CATALOG = [
    {"item_id": "a", "title": "The Maltese Falcon (1941)", "categories": ["Film-Noir", "Mystery"]},
    {"item_id": "b", "title": "Toy Story (1995)", "categories": ["Animation", "Comedy"]},
    {"item_id": "c", "title": "Alien (1979)", "categories": ["Horror", "Sci-Fi"], "description": "In space."},
]


def write_catalog(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def catalog_cfg(tmp_path):
    folder = tmp_path / "catalog"
    folder.mkdir()
    write_catalog(folder / "items.jsonl", CATALOG)
    return etl_cfg(tmp_path / "lake", f"input.items.path={folder}", "text.batch_size=2"), folder


@pytest.mark.slow
def test_second_run_embeds_nothing_and_a_changed_title_is_reembedded(catalog_cfg, spark):
    cfg, folder = catalog_cfg
    lake = Lake(cfg.lake.root, spark)
    run_job(jobs.items, cfg, spark, lake)
    first = run_job(jobs.embed, cfg, spark, lake).metrics
    assert (first["items"], first["embedded"], first["reused"]) == (3, 3, 0) and first["texts_per_s"] > 0
    table = lake.read(T.SILVER_ITEM_EMBEDDINGS)
    rows = {r.item_id: r for r in table.collect()}
    assert {r.encoder for r in rows.values()} == {"all-MiniLM-L6-v2"} and {r.dim for r in rows.values()} == {384}
    assert np.allclose([np.linalg.norm(r.embedding) for r in rows.values()], 1.0, atol=1e-4)
    version = lake.version(T.SILVER_ITEM_EMBEDDINGS)

    again = run_job(jobs.embed, cfg, spark, lake).metrics
    assert (again["embedded"], again["reused"]) == (0, 3)
    assert lake.version(T.SILVER_ITEM_EMBEDDINGS) == version  # nothing changed: nothing written

    write_catalog(folder / "items.jsonl", [{**CATALOG[0], "title": "The Big Sleep (1946)"}, *CATALOG[1:]])
    run_job(jobs.items, cfg, spark, lake)
    changed = run_job(jobs.embed, cfg, spark, lake).metrics
    assert (changed["embedded"], changed["reused"]) == (1, 2)
    after = {r.item_id: r for r in lake.read(T.SILVER_ITEM_EMBEDDINGS).collect()}
    assert after["a"].content_hash != rows["a"].content_hash and after["a"].embedding != rows["a"].embedding
    assert after["b"].embedding == rows["b"].embedding and after["b"].embedded_at == rows["b"].embedded_at

    vectors = read_item_embeddings(lake.read(T.SILVER_ITEM_EMBEDDINGS), "all-MiniLM-L6-v2").toPandas()
    matrix = embedding_matrix(vectors, ["b", "zz", "a"])
    assert matrix.shape == (4, 384) and not matrix[0].any() and not matrix[2].any()  # padding, no text
    assert np.allclose(matrix[3], after["a"].embedding)


def test_items_removed_from_the_catalog_leave_the_table(catalog_cfg, spark):
    cfg, folder = catalog_cfg
    lake = Lake(cfg.lake.root, spark)
    run_job(jobs.items, cfg, spark, lake)
    run_job(jobs.embed, cfg, spark, lake)
    write_catalog(folder / "items.jsonl", CATALOG[:2])
    run_job(jobs.items, cfg, spark, lake)
    m = run_job(jobs.embed, cfg, spark, lake).metrics
    assert (m["embedded"], m["reused"], m["removed"]) == (0, 2, 1)
    assert sorted(r.item_id for r in lake.read(T.SILVER_ITEM_EMBEDDINGS).collect()) == ["a", "b"]


@pytest.mark.slow
def test_encoder_loads_with_no_network():
    """HF_HUB_OFFLINE=1 and every proxy pointing nowhere: the packaged encoder must still load and encode."""
    code = ("from lakerec.text.encoder import encode; v = encode(['a noir thriller from 1947'], "
            "'all-MiniLM-L6-v2'); print(v.shape)")
    dead = "http://127.0.0.1:9"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HTTP_PROXY": dead, "HTTPS_PROXY": dead, "http_proxy": dead,
           "https_proxy": dead, "HF_HOME": "/nonexistent/hf-home"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("(1, 384)")


def test_an_encoder_that_is_no_local_folder_is_refused(catalog_cfg, spark):
    from lakerec.text.encoder import EncoderError, resolve

    with pytest.raises(EncoderError, match="local model folder"):
        resolve("intfloat/e5-large-v2")


@pytest.mark.slow
def test_another_encoders_rows_neither_count_as_reused_nor_hide_a_removed_item(catalog_cfg, spark):
    """Two encoders in one table (the packaged model under its folder name is a second encoder string): a run
    of one reuses and removes only its own rows; an item gone from the catalog leaves its rows, the other
    encoder's stay as they are."""
    from lakerec.text.encoder import packaged_model_dir

    cfg, folder = catalog_cfg
    other = cfg.model_copy(update={"text": cfg.text.model_copy(update={"encoder": str(packaged_model_dir())})})
    lake = Lake(cfg.lake.root, spark)
    run_job(jobs.items, cfg, spark, lake)
    run_job(jobs.embed, cfg, spark, lake)
    assert run_job(jobs.embed, other, spark, lake).metrics["embedded"] == 3
    again = run_job(jobs.embed, cfg, spark, lake).metrics
    assert (again["embedded"], again["reused"], again["removed"]) == (0, 3, 0)

    write_catalog(folder / "items.jsonl", CATALOG[:2])
    run_job(jobs.items, cfg, spark, lake)
    m = run_job(jobs.embed, cfg, spark, lake).metrics
    assert (m["embedded"], m["reused"], m["removed"]) == (0, 2, 1)
    rows = lake.read(T.SILVER_ITEM_EMBEDDINGS).collect()
    assert sorted(r.item_id for r in rows if r.encoder == cfg.text.encoder) == ["a", "b"]
    assert sorted(r.item_id for r in rows if r.encoder == other.text.encoder) == ["a", "b", "c"]
