"""The worker group's partition assignment, balanced per topic (plain logic, no Kafka).

A worker consumes three topics per queue, one per priority level (``Settings.worker_topics``).
Kafka's cooperative-sticky assignor balances the *total* number of partitions per member, so one
worker could hold every partition of the ``high`` topic while another holds none: the second
would never help drain the level that matters most. ``plan`` balances each topic on its own
among the members subscribed to it (their shares differ by at most one), gives a topic's odd
partitions to the members with the fewest partitions so far (so totals stay balanced too), and
otherwise keeps every partition where it is (sticky: a worker joining or leaving moves few).

It keeps the cooperative rule of KIP-429 (``cooperative``): a partition another member still
owns is left out of its new owner's assignment this round; the owner revokes it and rejoins, and
the next round hands it over. The adapter wraps it as a kafka-python assignor
(``yadtq.broker``); librdkafka takes no custom assignor, so the ``confluent`` client keeps
cooperative-sticky (README, "Priorities").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Partition = tuple[str, int]


def plan(subscriptions: Mapping[str, Sequence[str]], partitions: Mapping[str, Sequence[int]],
         owned: Mapping[str, Sequence[Partition]]) -> dict[str, dict[str, list[int]]]:
    """The target assignment: member -> topic -> sorted partitions (see the module's text).

    ``subscriptions``: member -> its topics; ``partitions``: topic -> its partition numbers (a
    topic missing or empty is skipped); ``owned``: member -> the partitions it holds now (a
    partition two members claim goes to the first in member order; one no longer subscribed
    to, or not of the topic any more, is dropped)."""
    members = sorted(subscriptions)
    out: dict[str, dict[str, list[int]]] = {m: {} for m in members}
    total = dict.fromkeys(members, 0)
    holder: dict[Partition, str] = {}
    for m in members:
        for tp in owned.get(m, ()):
            holder.setdefault(tp, m)
    topics = sorted({t for m in members for t in subscriptions[m]},
                    key=lambda t: (-len(partitions.get(t, ())), t))
    for topic in topics:
        numbers = sorted(set(partitions.get(topic, ())))
        subs = [m for m in members if topic in subscriptions[m]]
        if not numbers or not subs:
            continue
        base, extra = divmod(len(numbers), len(subs))
        held = {m: [p for p in numbers if holder.get((topic, p)) == m] for m in subs}
        # the odd partitions go to the members with the fewest so far; among equals, to those
        # that hold more than the base share already (nothing moves), then by member id
        ranked = sorted(subs, key=lambda m: (total[m], len(held[m]) <= base, m))
        quota = {m: base + (1 if i < extra else 0) for i, m in enumerate(ranked)}
        kept = {m: held[m][:quota[m]] for m in subs}
        taken = {p for ps in kept.values() for p in ps}
        free = iter(p for p in numbers if p not in taken)
        for m in ranked:
            mine = kept[m] + [next(free) for _ in range(quota[m] - len(kept[m]))]
            out[m][topic] = sorted(mine)
            total[m] += quota[m]
    return out


def cooperative(target: Mapping[str, Mapping[str, Sequence[int]]],
                owned: Mapping[str, Sequence[Partition]]) -> dict[str, dict[str, list[int]]]:
    """``target`` without the partitions that another member still owns (KIP-429's first
    round): those are revoked by their owner, which rejoins, and assigned in the next round."""
    holder: dict[Partition, str] = {}
    for m in sorted(owned):
        for tp in owned[m]:
            holder.setdefault(tp, m)
    return {m: {t: [p for p in ps if holder.get((t, p), m) == m] for t, ps in topics.items()}
            for m, topics in target.items()}
