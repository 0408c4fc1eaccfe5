"""The Slurm backend: remo's API in front of a Slurm cluster (docs/SLURM.md).

Modules, one job each: :mod:`.settings` (the ``[slurm]`` settings), :mod:`.script`
(limits to sbatch options, the batch script), :mod:`.jobinit` (the init that is the
batch script, standard library only), :mod:`.commands` (sbatch, squeue, scancel),
:mod:`.table` (the job table), :mod:`.jobdir`
(a job's directory), :mod:`.ending` (how a job ended), :mod:`.jobs`
(:class:`~remo.slurm.jobs.SlurmJobs`, the backend), :mod:`.admin` (``remo admin``'s
stop of an account's jobs). Nothing is imported here, so the
server's configuration can use the settings without loading the rest.
"""
