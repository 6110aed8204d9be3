"""Demo actors for the local three-node cluster (config/cluster/, scripts/cluster).

A token goes round a ring of ``member`` processes, one per node; ``member`` started as the
ring's origin times each round. Every hop is a message between nodes (SPEC 11).
"""
