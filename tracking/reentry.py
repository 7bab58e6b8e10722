"""Re-entry: a person who leaves the view (or is hidden) and comes back gets their earlier ID.

Offline, over the whole video, after stitching (tracking/refine.py) and by stitching's rules: a
track (a chain of stitched tracks) that ends may be joined to one of the same class that starts
after its last detection and at most `refine.reentry_max_gap_s` later, when the cosine distance
between their mean re-identification embeddings is <= `refine.reentry_max_distance`. Unlike
stitching there is no motion check: someone who comes back may come back anywhere, so the
appearance gate is the strict one and only classes embedded by the re-identification network
(`embedder.reid_classes`) take part. Pairs are joined greedily, cheapest first; each track gets
at most one successor and one predecessor, so joined tracks never overlap in time.

The gallery is bounded: a track is only compared with tracks that start within
`reentry_max_gap_s` of its end (the tracks are sorted by start, so the candidates of each end
are one `searchsorted` window), and it holds one mean embedding per track, so an hour-long video
costs what its number of tracks does, not its length.
"""

from __future__ import annotations

import numpy as np

from tracking.tracks import DETECTED, TrackRows


def chain_embeddings(sums: dict[int, np.ndarray], links: dict[int, int]) -> dict[int, np.ndarray]:
    """Unit mean embeddings of stitched chains, keyed by each chain's first track: the sum of
    its members' appearance sums (`TrackLog.embedding_sum`), normalised."""
    pred = {b: a for a, b in links.items()}
    chains: dict[int, np.ndarray] = {}
    for t, s in sums.items():
        root = t
        while root in pred:
            root = pred[root]
        chains[root] = chains[root] + s if root in chains else s.astype(np.float64)
    return {t: v / n for t, v in chains.items() if (n := float(np.linalg.norm(v))) > 0}


def reentry_links(rows: TrackRows, emb: dict[int, np.ndarray], ts: np.ndarray, max_gap_s: float,
                  max_distance: float, classes: np.ndarray) -> dict[int, int]:
    """predecessor -> successor for tracks of `classes` (class ids), chosen greedily by distance."""
    det = rows.take(np.flatnonzero((rows.source == DETECTED) & np.isin(rows.cls, classes)))
    if not len(det) or max_gap_s <= 0:
        return {}
    tracks, inv = np.unique(det.track, return_inverse=True)
    first = np.full(len(tracks), np.iinfo(np.int64).max)
    last = np.full(len(tracks), -1)
    np.minimum.at(first, inv, det.frame)
    np.maximum.at(last, inv, det.frame)
    cls = np.zeros(len(tracks), np.int64)
    cls[inv] = det.cls
    order = np.argsort(first, kind="stable")
    tracks, first, last, cls = tracks[order], first[order], last[order], cls[order]
    candidates = []
    for i in range(len(tracks)):
        a = int(tracks[i])
        until = int(np.searchsorted(ts, ts[last[i]] + max_gap_s + 1e-9, side="right"))
        lo, hi = np.searchsorted(first, [last[i] + 1, until])
        for j in range(int(lo), int(hi)):
            b = int(tracks[j])
            if cls[j] != cls[i] or a not in emb or b not in emb:
                continue
            cost = 1.0 - float(emb[a] @ emb[b])
            if cost <= max_distance:
                candidates.append((cost, a, b))
    return greedy_links(candidates)


def greedy_links(candidates: list[tuple[float, int, int]]) -> dict[int, int]:
    """(cost, predecessor, successor) pairs joined cheapest first, each track with at most one
    successor and one predecessor (stitching's rule, and re-entry's)."""
    links: dict[int, int] = {}
    taken: set[int] = set()
    for _, a, b in sorted(candidates):
        if a not in links and b not in taken:
            links[a] = b
            taken.add(b)
    return links
