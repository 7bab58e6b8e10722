"""Counting from the tables: line crossings and zone visits computed from a dataset's track
rows with DuckDB, never re-running a video (`vidtrack count`, README "Counting").

    settings.py  what a count is (CountSpec: lines, zones, selection, buckets, clock; the TOML file)
    geometry.py  lines and zones: parsing, validation, which side is `in`, the set id
    source.py    the complete (`_done`) videos selected, and their track rows as a DuckDB view
    queries.py   the SQL: crossings and zone transitions in one windowed pass, events, visits
    engine.py    one count (compute) and its buckets (line_counts, zone_counts)
    output.py    events/visits Parquet in the dataset, the terminal table, JSON, --out
    preview.py   lines and zones drawn on a frame
    report.py    counts over time per line and direction, for the run report
    cli.py       the command's flags
"""
