"""XCom backends written the way strangers write them, each with the verdict the kit must give it.

Nothing here imports xcomsim: every backend module is one a user could have
written from Airflow's docs or a blog post. ``EXPECTED`` lists, per backend,
the verdict per guarantee and the offload threshold discovery must find.
"""

K, B, NC, SAME = "kept", "broken", "not claimed", "not claimed (same as Airflow)"

# backend -> (discovered threshold in bytes, 0: every value; verdict per guarantee)
EXPECTED = {
    "corpus.own_bucket.TeamS3XCom": (4097, {"push-once": SAME, "round-trip-exact": K, "offload-threshold": K,
                                            "purge-leaves-no-orphan": K, "no-dangling-reference": K}),
    # a user's "s3_xcom_<uuid>" string is fetched as a reference; no purge at all
    "corpus.uuid_objects.UuidS3XCom": (1024, {"push-once": SAME, "round-trip-exact": B, "offload-threshold": K,
                                              "purge-leaves-no-orphan": B, "no-dangling-reference": K}),
    # a user's string that looks like its bare key is fetched as a reference
    "corpus.bare_key.BareKeyXCom": (2049, {"push-once": SAME, "round-trip-exact": B, "offload-threshold": K,
                                           "purge-leaves-no-orphan": K, "no-dangling-reference": K}),
    "corpus.redis_cache.RedisCacheXCom": (512, {"push-once": SAME, "round-trip-exact": K, "offload-threshold": K,
                                                "purge-leaves-no-orphan": K, "no-dangling-reference": K}),
    "corpus.local_files.LocalFilesXCom": (256, {"push-once": SAME, "round-trip-exact": K, "offload-threshold": K,
                                                "purge-leaves-no-orphan": K, "no-dangling-reference": K}),
    # uuid-named objects: a rerun after a clear (rows deleted, purge not called) leaves the old object
    "corpus.offload_everything.EverythingS3XCom": (0, {"push-once": SAME, "round-trip-exact": K,
                                                       "offload-threshold": K, "purge-leaves-no-orphan": B,
                                                       "no-dangling-reference": K}),
    # 'é' x 499 is 1000 bytes serialised but 501 characters: stays inline
    "corpus.char_count.CharCountXCom": (1000, {"push-once": SAME, "round-trip-exact": K, "offload-threshold": B,
                                               "purge-leaves-no-orphan": K, "no-dangling-reference": K}),
    # any "s3://..." string is fetched: a user's "s3://data-lake/x.parquet" raises NoSuchBucket
    "corpus.lookalike.S3UriXCom": (2000, {"push-once": SAME, "round-trip-exact": B, "offload-threshold": K,
                                          "purge-leaves-no-orphan": K, "no-dangling-reference": K}),
    "corpus.pickled.PickledS3XCom": (3000, {"push-once": SAME, "round-trip-exact": K, "offload-threshold": K,
                                            "purge-leaves-no-orphan": K, "no-dangling-reference": K}),
}

# What an operator provides for them: their buckets, and the Redis connection ``xcom_cache`` (DB 3).
BUCKETS = ("team-xcom-store", "my-airflow-xcoms", "xcom-bare-keys", "all-xcoms", "char-count-xcom", "lookalike-xcom",
           "pickled-xcom")
