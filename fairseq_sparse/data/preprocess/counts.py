"""The counts every preprocessing step reports (and adds up across shards and parts)."""

import collections


class StepCounts:
    """Named totals plus "dropped ... by reason" tallies; mergeable and JSON-serialisable."""

    def __init__(self):
        self.totals = collections.Counter()
        self.dropped_lines = collections.Counter()
        self.dropped_documents = collections.Counter()

    def add(self, other):
        if isinstance(other, dict):
            other = StepCounts.from_dict(other)
        self.totals.update(other.totals)
        self.dropped_lines.update(other.dropped_lines)
        self.dropped_documents.update(other.dropped_documents)
        return self

    def to_dict(self):
        out = dict(sorted(self.totals.items()))
        out["dropped_lines"] = dict(sorted(self.dropped_lines.items()))
        out["dropped_documents"] = dict(sorted(self.dropped_documents.items()))
        return out

    @classmethod
    def from_dict(cls, d):
        c = cls()
        for k, v in d.items():
            if k == "dropped_lines":
                c.dropped_lines.update(v)
            elif k == "dropped_documents":
                c.dropped_documents.update(v)
            elif isinstance(v, (int, float)):
                c.totals[k] += v
        return c
