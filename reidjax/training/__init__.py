"""Training: the train step and loop (`train_lib`), the train state and where it starts
(`state`, `restore`), the optimizer (`optim`), checkpoints and their digests (`checkpoint`,
`integrity`), the divergence guard, preemption and several hosts (`divergence`,
`preemption`, `hosts`), the workdir lock (`runlock`) and the training log (`metrics_log`)."""
