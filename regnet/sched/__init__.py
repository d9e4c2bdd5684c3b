"""Learning-rate schedules: one file each, one YAML each in ``conf/sched/``.

Each is a factory ``(optimizer, *, total_steps, **settings) -> LRScheduler``; ``total_steps`` is the
number of times the scheduler will be stepped (optimizer steps for ``interval: step``, epochs for
``interval: epoch``), so schedules can be written as fractions of training.
"""
