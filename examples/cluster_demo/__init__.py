"""Demo actors for the local three-node cluster (config/cluster/, scripts/cluster).

A token goes round a ring of processes, one per node: a ``coordinator`` spawns a ``member``
on each other node (remote spawn, monitored), times each round, and re-forms the ring when a
node goes down and again when it is back. Every hop is a message between nodes (SPEC 11).
"""
