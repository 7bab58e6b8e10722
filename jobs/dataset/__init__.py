"""The output dataset, one folder per params_id: where each thing lives (layout.py), the run
manifest and its journal (manifest.py), and the per-video `_done`/`_failed` markers (markers.py)."""
