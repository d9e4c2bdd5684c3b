"""Stacked runs: the compatible jobs of a sweep trained as one batched ("wide") model in one process.

    python -m regnet.train -m hydra/launcher=stacked experiment=hoffman2019_mnist \\
        variant=no_reg,no_reg_no_dropout,l2,jacobi,jacobi_no_dropout,svb seed=0,1,2,3,4

On a GPU a small model's step is launch-bound: its cost barely depends on how many images it carries, and
separate processes sharing one GPU time-slice rather than overlap. A stack makes every kernel serve all its
members. It is a GPU feature; on a small CPU it does not pay, but it is correct (and tested) everywhere.

- ``layers.py``: the wide model (grouped convolutions, batched matmuls, per-member BatchNorm and dropout);
- ``regularizers.py``: the members' regularizers of each kind as one (``Regularizer.stack``): per-member
  coefficients; the formulas are ``regnet/regularizers``' own, written once over a member axis, as the losses;
- ``module.py``: the LightningModule (per-member losses, metrics, weight decay, clipping, divergence freeze);
- ``loggers.py``: one logger per member behind one, and each member's view of the stack's metrics;
- ``data.py``: each member's own batch order from the shared dataset;
- ``train.py``: ``train_stack`` — build, fit, test, and each member's run directory;
- ``grouping.py``: which jobs share a stack, and the one-line reason when one cannot;
- ``launcher.py``: the Hydra launcher (``conf/hydra/launcher/stacked.yaml``).

Design: a wide model, not ``torch.func``. ``stack_module_state`` + ``functional_call`` + ``vmap`` batches the
same kernels (vmap lowers a batched conv to a grouped one, a batched linear to ``bmm``), but under ``vmap``
BatchNorm cannot update its running statistics in place, dropout needs ``randomness="different"``, the Jacobian
penalty's input gradients need a nested ``grad`` inside the vmapped function, and Lightning has no torch.func
support (Lightning-AI/pytorch-lightning#17820). The wide model is an ordinary ``nn.Module``: one forward over
``(N, S·C, H, W)``, ordinary autograd (one ``autograd.grad`` over the wide input gives every member's vᵀJ),
``F.batch_norm`` over S·C channels (per-member statistics, in place), a Lightning Trainer, checkpoints and
resume as a separate run has. Members' parameters are ``(S, *shape)`` under their own names, so a member's
``state_dict`` is one index away. It is at least as fast as ``vmap`` on the CPU, and does everything above
(benchmarks/RESULTS.md, "The wide model against torch.func.vmap"). GPU throughput:
``benchmarks/throughput.py --stacked 1,5,30``.
"""
