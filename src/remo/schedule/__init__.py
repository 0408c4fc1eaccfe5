"""Schedules: when a job should run (``--at``, ``--in``, ``--every``).

:mod:`remo.schedule.store` keeps schedules and their runs, :mod:`remo.schedule.timer`
starts the runs; :mod:`remo.core.timeexpr` turns what users type into times and periods.
"""
