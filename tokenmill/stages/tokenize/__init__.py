"""Tokenize, a global stage: curated documents → token shards in RUN/tokens/.

    stage.py   TokenizeStage and its config: the driver's plan (tokenizer, encode, write, manifest)
    tasks.py   the task bodies: sample, train the tokenizer, encode, write shard ranges

The shard format, its manifest schema, the tokenizer helpers and `TokenShards` live in
`tokenmill.tokenize`, which a training job imports without the pipeline.
"""

from tokenmill.stages.tokenize.stage import TokenizeConfig, TokenizeStage  # noqa: F401
