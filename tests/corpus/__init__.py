"""XCom backends written the way strangers write them, each with the verdict the kit must give it.

Nothing here imports xcomsim: every module is a backend a user could have
written from Airflow's docs or a blog post. ``EXPECTED`` lists, per backend,
the verdict per guarantee and the offload threshold discovery must find.
"""
