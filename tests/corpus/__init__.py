"""XCom backends written the way strangers write them, each with the verdict the kit must give it.

Nothing here imports xcomsim: every backend module is one a user could have
written from Airflow's docs or a blog post. ``EXPECTED`` lists, per backend,
the verdict per guarantee and the offload threshold discovery must find.
"""

K, B, NC, SAME = "kept", "broken", "not claimed", "not claimed (same as Airflow)"


def verdicts(round_trip: str, offload: str, orphan: str, purge_own: str = "broken") -> dict[str, str]:
    """The table every corpus backend gets, given the four guarantees where they differ.

    Alike for all: push-once is not claimed, as in Airflow; no row dangles, not even after a lost
    reply (all but ``tidy_on_error``, which overrides it); a crashed push never blocks the next try
    (no guard to leave behind); no sweeper is declared. ``purge_own``: purge deletes whatever a row names, so a row rewritten to name another
    XCom's object (Airflow 3's REST API can rewrite an entry) deletes it; kept only without a purge.
    """
    return {"push-once": SAME, "round-trip-exact": round_trip, "offload-threshold": offload,
            "purge-leaves-no-orphan": orphan, "no-dangling-reference": K, "retry-can-push": K,
            "purge-deletes-only-its-own": purge_own, "gc-safe-with-inflight-pushes": NC}  # fmt: skip


# backend -> (discovered threshold in bytes, 0: every value; verdict per guarantee)
EXPECTED = {
    "corpus.own_bucket.TeamS3XCom": (4097, verdicts(K, K, K)),
    # a user's "s3_xcom_<uuid>" string is fetched as a reference; no purge at all (so it deletes nothing foreign)
    "corpus.uuid_objects.UuidS3XCom": (1024, verdicts(B, K, B, purge_own=K)),
    # a user's string that looks like its bare key is fetched as a reference
    "corpus.bare_key.BareKeyXCom": (2049, verdicts(B, K, K)),
    "corpus.redis_cache.RedisCacheXCom": (512, verdicts(K, K, K)),
    "corpus.local_files.LocalFilesXCom": (256, verdicts(K, K, K)),
    # uuid-named objects: a rerun after a clear (rows deleted, purge not called) leaves the old object
    "corpus.offload_everything.EverythingS3XCom": (0, verdicts(K, K, B)),
    # 'é' x 499 is 1000 bytes serialised but 501 characters: stays inline
    "corpus.char_count.CharCountXCom": (1000, verdicts(K, B, K)),
    # any "s3://..." string is fetched: a user's "s3://data-lake/x.parquet" raises NoSuchBucket
    "corpus.lookalike.S3UriXCom": (2000, verdicts(B, K, K)),
    "corpus.pickled.PickledS3XCom": (3000, verdicts(K, K, K)),
    # ``xcom_s3://`` rows; a failed row write deletes the object, even when the row landed and only its reply was lost
    "corpus.tidy_on_error.TidyS3XCom": (1500, {**verdicts(K, K, K), "no-dangling-reference": B}),
}

# What an operator provides for them: their buckets, and the Redis connection ``xcom_cache`` (DB 3).
BUCKETS = ("team-xcom-store", "my-airflow-xcoms", "xcom-bare-keys", "all-xcoms", "char-count-xcom", "lookalike-xcom",
           "pickled-xcom", "tidy-xcom")
