"""The supervisor: the one single-threaded process that forks, reaps and records jobs.

It outlives the process that uses :class:`remo.worker.JobManager` (an API server may be
restarted or killed without harming jobs) and exits by itself once it has neither
clients nor running jobs.
"""
