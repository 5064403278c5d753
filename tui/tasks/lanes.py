"""How the engine runs a plan's hosts: one lane (thread) per host, each running its phases
in plan order; a phase of stage ``s`` starts once every *other* host's gating phases of a
lower stage are done.  With one host this is the plain loop it always was (no thread).

A failed step (Abort) stops its lane and tells the others, which stop before their next
step: the step a host is in finishes (its command is remote; cutting it would leave the host
half-way), nothing new starts.
"""

from __future__ import annotations

import threading

from .state import Status


class Lanes:
    def __init__(self, engine, steps: list):
        self.engine = engine
        chosen = {id(s) for s in steps}
        self.phases = []      # (phase, its selected steps), plan order
        for p in engine.plan.phases:
            mine = [st for st in p.steps if id(st) in chosen]
            if mine:
                self.phases.append((p, mine))
        self.pending = {id(p) for p, _ in self.phases if p.gates}
        self.cond = threading.Condition()
        self.stop = False

    def ready(self, phase) -> bool:
        return all(id(q) not in self.pending for q, _ in self.phases
                   if q.host != phase.host and q.gates and q.stage < phase.stage)

    def run(self, numbered: dict, total: int) -> list[Status]:
        """The statuses of the steps that ran."""
        hosts = list(dict.fromkeys(p.host for p, _ in self.phases))
        results: dict[str, list[Status]] = {h: [] for h in hosts}
        if len(hosts) <= 1:
            for h in hosts:
                self.lane(h, numbered, total, results[h])
        else:
            threads = [threading.Thread(target=self.lane, daemon=True,
                                        args=(h, numbered, total, results[h]),
                                        name=f"stack-tui-{h or 'controller'}") for h in hosts]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        return [status for h in hosts for status in results[h]]

    def lane(self, host: str, numbered: dict, total: int, out: list[Status]) -> None:
        for phase, steps in ((p, s) for p, s in self.phases if p.host == host):
            with self.cond:
                self.cond.wait_for(lambda: self.stop or self.ready(phase))
                if self.stop:
                    return
            for st in steps:
                if self.stop:
                    return
                status = self.engine._run_step(st, numbered[id(st)], total)
                out.append(status)
                if status == Status.FAILED:
                    with self.cond:
                        self.stop = True
                        self.cond.notify_all()
                    return
            with self.cond:
                self.pending.discard(id(phase))
                self.cond.notify_all()
