"""XCom backends written the way strangers write them, each with the verdict the kit must give it.

Nothing here imports xcomsim: every backend module is one a user could have
written from Airflow's docs or a blog post. ``EXPECTED`` lists, per backend,
the verdict per guarantee and the offload threshold discovery must find.
"""

import re

K, B, NC, SAME = "kept", "broken", "not claimed", "not claimed (same as Airflow)"


def verdicts(round_trip: str, offload: str, orphan: str, purge_own: str = "broken", rows: str = "kept") -> dict[str, str]:
    """The table every corpus backend gets, given the five guarantees where they differ.

    Alike for all: push-once is not claimed, as in Airflow, nor therefore fenced tries; a value Airflow
    refuses leaves nothing that stops the next push of its key (no guard to leave behind); no row dangles, not even after a lost
    reply (all but ``tidy_on_error``, which overrides it); a crashed push never blocks the next try
    (no guard to leave behind); no sweeper is declared. ``purge_own``: purge deletes whatever a row names, so a row rewritten to name another
    XCom's object (Airflow 3's REST API can rewrite an entry) deletes it; kept only without a purge.
    ``rows``: the extra-link rows Airflow's ``finalize`` writes past the backend (a URL string, or "")
    read back; broken where the backend indexes every row as its own envelope (``row["kind"]``) or key.
    """
    return {"push-once": SAME, "round-trip-exact": round_trip, "offload-threshold": offload,
            "purge-leaves-no-orphan": orphan, "no-dangling-reference": K, "retry-can-push": K,
            "purge-deletes-only-its-own": purge_own, "gc-safe-with-inflight-pushes": NC,
            "reads-airflow-rows": rows, "fenced-tries": SAME, "refusal-leaves-nothing": K}  # fmt: skip


def size(threshold: int) -> str:
    """The start of the discovered line of a backend offloading from ``threshold`` bytes (0: every value)."""
    return "offloads every value to " if threshold == 0 else f"offloads >= {threshold} B to "


# backend -> (the start of its discovered line; verdict per guarantee)
EXPECTED = {
    # envelope rows read as row["kind"]: a link row (a plain string) raises TypeError
    "corpus.own_bucket.TeamS3XCom": (size(4097), verdicts(K, K, K, rows=B)),
    # a user's "s3_xcom_<uuid>" string is fetched as a reference; no purge at all (so it deletes nothing foreign)
    "corpus.uuid_objects.UuidS3XCom": (size(1024), verdicts(B, K, B, purge_own=K)),
    # a user's string that looks like its bare key is fetched as a reference
    "corpus.bare_key.BareKeyXCom": (size(2049), verdicts(B, K, K)),
    # rows are (tag, body) pairs: a link row does not unpack
    "corpus.redis_cache.RedisCacheXCom": (size(512), verdicts(K, K, K, rows=B)),
    # rows are {"file"|"inline": ...}: a link row has no "inline"
    "corpus.local_files.LocalFilesXCom": (size(256), verdicts(K, K, K, rows=B)),
    # uuid-named objects: a rerun after a clear (rows deleted, purge not called) leaves the old object;
    # every row is split as an s3:// URI
    "corpus.offload_everything.EverythingS3XCom": (size(0), verdicts(K, K, B, rows=B)),
    # 'é' x 499 is 1000 bytes serialised but 501 characters: stays inline
    "corpus.char_count.CharCountXCom": (size(1000), verdicts(K, B, K, rows=B)),
    # any "s3://..." string is fetched: a user's "s3://data-lake/x.parquet" raises NoSuchBucket; its object
    # name leaves out the map index, so mapped instances overwrite one object
    "corpus.lookalike.S3UriXCom": (size(2000), verdicts(B, K, K)),
    "corpus.pickled.PickledS3XCom": (size(3000), verdicts(K, K, K, rows=B)),
    # ``xcom_s3://`` rows; a failed row write deletes the object, even when the row landed and only its reply was lost
    "corpus.tidy_on_error.TidyS3XCom": (size(1500), {**verdicts(K, K, K, rows=B), "no-dangling-reference": B}),
    # every DataFrame to parquet, whatever its size; any "xcom_s3://" string is fetched; no purge
    "corpus.parquet_frames.ParquetS3XCom": ("offloads every DataFrame to s3://frames-xcom/frames/",
                                            verdicts(B, K, B, purge_own=K)),
    # every DataFrame to CSV: a column of zero-padded codes comes back as integers; uuid-named objects
    "corpus.csv_frames.CsvS3XCom": ("offloads every DataFrame to s3://csv-xcom/", verdicts(B, K, B)),
    # lists and tuples of more than 50 items to local JSON files: a long tuple comes back a list
    "corpus.counted_files.CountedFilesXCom": ("offloads lists > 50 items to file:///", verdicts(B, K, K)),
    # a user's dict with a truthy "__snapshot__" key is taken for its own Snapshot (KeyError); all inline
    "corpus.snapshot_marker.SnapshotXCom": ("stores every value inline", {
        **verdicts(B, NC, NC, purge_own=K), "no-dangling-reference": NC}),
    # every value to a blob container: reads only the first 100,000 bytes, refuses uploads of 1,000,000 or more
    "corpus.size_limited.LimitedBlobXCom": (size(0), verdicts(B, K, B)),
    # objects named without the map index: mapped instances overwrite one, and purge of one deletes it for all
    "corpus.mapless_names.SharedNameXCom": (size(2048), verdicts(B, K, K)),
    # the row is the object key, and every row is read as one: a link row is a key that does not exist
    "corpus.all_references.AllRefsXCom": (size(0), verdicts(K, K, B, rows=B)),
}

# What an operator provides for them: their buckets, and the Redis connection ``xcom_cache`` (DB 3).
BUCKETS = ("team-xcom-store", "my-airflow-xcoms", "xcom-bare-keys", "all-xcoms", "char-count-xcom", "lookalike-xcom",
           "pickled-xcom", "tidy-xcom", "frames-xcom", "csv-xcom", "blob-xcom", "shared-names-xcom", "all-refs-xcom")
# A conftest.py that provides them in a kit run's project folder (the corpus test, the kit-time benchmark).
STORES_CONFTEST = f'''
import pytest

@pytest.fixture(autouse=True)
def corpus_stores(xcomsim_env, monkeypatch):
    for bucket in {BUCKETS!r}:
        xcomsim_env.s3.create_bucket(Bucket=bucket)
    server = xcomsim_env.simulation.redis
    monkeypatch.setenv("AIRFLOW_CONN_XCOM_CACHE", f"redis://{{server.host}}:{{server.port}}/3")
'''


def reported(table: str, guarantee: str) -> str:
    """The verdict a printed verdict table gives ``guarantee`` ("missing" if it has no line)."""
    found = re.search(rf"^  {re.escape(guarantee)}\s+(kept|broken|not claimed(?: \(same as Airflow\))?|not run)"
                      r"(?: \(first failure at example \d+\))?$", table, re.M)  # fmt: skip
    return found.group(1) if found else "missing"
