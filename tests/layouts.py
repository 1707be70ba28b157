"""Layouts of a given size for tests that need a network of K heatmaps and P pairs (e.g. BODY_25's 26 and
26): points ``p0 ..``, pairs joining each point to the next, then to the one after, ... until P."""

from src.core.skeleton import Layout


def sized(k: int, p: int) -> Layout:
    pairs: list[tuple[int, int]] = []
    step = 1
    while len(pairs) < p:
        for i in range(k):
            pair = (i, (i + step) % k)
            if len(pairs) < p and pair[0] != pair[1] and pair not in pairs and pair[::-1] not in pairs:
                pairs.append(pair)
        step += 1
    names = [f"p{i}" for i in range(k)]
    return Layout.from_dict({"name": f"sized_{k}_{p}", "keypoints": names,
                             "pairs": [[names[a], names[b]] for a, b in pairs], "sigmas": [7.0] * k})
