"""A compact GPT that trains on tokenmill's token shards, then the rest of the recipe (needs the
`train` extra: torch).

    from tokenmill.train import pretrain, sft, rm, rl, sample
    pretrain.train("runs/demo/tokens", steps=150)                                   # → runs/demo/ckpt/
    sft.finetune("runs/demo/ckpt", "data/sft.jsonl", "runs/demo/sft")               # chat format, masked loss
    rm.train_reward_model("runs/demo/sft", "data/prefs.jsonl", "runs/demo/rm")      # Bradley–Terry
    rl.reinforce("runs/demo/sft", "runs/demo/rl", task="arithmetic")                # group advantages
    print(sample.generate("runs/demo/ckpt", "The", seed=0))

One file per idea: model (GPT, KV cache), data (pretraining batches), chat (the chat format and
the JSONL readers), tasks (synthetic data with checkable answers), checkpoint (lineage, metrics),
demo (the whole chain). Importing this package does not import torch; its modules do.
"""
