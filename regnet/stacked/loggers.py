"""A stack's logging: one Lightning logger per member behind one (``MemberLoggers``), and each member's view of
the stack's metrics (``member_metrics``). The stack logs member s's values as ``m<s>/<key>``."""

from __future__ import annotations

import re

from lightning.pytorch.loggers.logger import Logger

MEMBER_KEY = re.compile(r"^m(\d+)/(.*)$")


class MemberLoggers(Logger):
    """One Lightning logger per member behind one: ``m<s>/<key>`` goes to member s's logger as ``<key>``, keys
    without a member prefix (learning rate, throughput) go to every member's."""

    def __init__(self, loggers: list[Logger | None]):
        super().__init__()
        self.members = loggers

    @property
    def name(self) -> str:
        return "members"

    @property
    def version(self) -> str:
        return ""

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        shared = {k: v for k, v in metrics.items() if not MEMBER_KEY.match(k)}
        per: dict[int, dict] = {}
        for k, v in metrics.items():
            m = MEMBER_KEY.match(k)
            if m:
                per.setdefault(int(m.group(1)), {})[m.group(2)] = v
        for s, lg in enumerate(self.members):
            if lg is not None and (s in per or shared):
                lg.log_metrics({**per.get(s, {}), **shared}, step)

    def save(self) -> None:
        for lg in self.members:
            if lg is not None:
                lg.save()

    def finalize(self, status: str) -> None:
        for lg in self.members:
            if lg is not None:
                lg.finalize(status)


def member_metrics(metrics: dict, s: int) -> dict[str, float]:
    """Member s's view of a stacked trainer's metrics: its ``m<s>/`` keys without the prefix, plus shared ones."""
    out = {}
    for k, v in metrics.items():
        m = MEMBER_KEY.match(k)
        if m is None:
            out[k] = float(v)
        elif int(m.group(1)) == s:
            out[m.group(2)] = float(v)
    return out


__all__ = ["MEMBER_KEY", "MemberLoggers", "member_metrics"]
