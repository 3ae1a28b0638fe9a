"""The main job, ``python -m fastpool bench``: fastpool beside its peers, in one process."""
