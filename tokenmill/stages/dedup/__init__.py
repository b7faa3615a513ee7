"""Dedup, a global stage: exact and MinHash-LSH near-duplicates across all shards.

    stage.py       DedupStage and its config: the driver's plan of fan-out steps, and the per-shard apply
    minhash.py     signatures and band keys, vectorised (no task code)
    signatures.py  per-shard signature task; the persisted signatures later runs dedup against
    lsh.py         band keys partitioned by hash → verified candidate pairs (the node-id keep rule)
    components.py  Large-Star / Small-Star connected components over partitioned edge files
    resolve.py     cluster sizes and survivors → per-shard drop lists
    files.py       scratch .npz files, partitions, peak memory
"""

from tokenmill.stages.dedup.stage import DedupConfig, DedupStage, drop_list_url  # noqa: F401
