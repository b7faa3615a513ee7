"""A compact GPT that trains on tokenmill's token shards (nanoGPT-sized; needs the `train` extra: torch).

    from tokenmill.train import pretrain, sample
    pretrain.train("runs/demo/tokens", steps=150)          # → runs/demo/ckpt/
    print(sample.generate("runs/demo/ckpt", "The", seed=0))

Importing this package does not import torch; its modules do.
"""
