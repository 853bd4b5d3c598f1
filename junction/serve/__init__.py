"""`junction serve`: the API, schedulers, file-drop watchers and workers in one process."""
