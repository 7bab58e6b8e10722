"""`vidtrack eval`: score the tracker on MOTChallenge sequences with TrackEval (command.py),
and sweep tracking parameters over one detection pass (sweep.py). It lives in jobs/, beside
the per-video library (tracking/, which it drives through process_video/retrack_video and
tracking/mot.py), because every sweep combination is a config loaded the CLI's way
(jobs/config.py: TOML plus --set overrides); tracking/ stays free of command lines."""
