"""The Ray actor's side of a run: the actor (actor.py), one attempt at one video (attempt.py),
what a failure means (outcome.py), publishing all or nothing (publish.py), scratch folders
(scratch.py)."""
