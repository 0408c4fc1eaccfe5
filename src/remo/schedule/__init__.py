"""Schedules: when a job should run (``--at``, ``--in``, ``--every``).

:mod:`remo.schedule.timeexpr` turns what users type into times and periods; it does no I/O.
"""
