"""``remo ui``: a web dashboard on the user's own machine.

It runs where the CLI runs, listens on 127.0.0.1 only, and reaches the remo servers
through the user's installed profiles with :class:`remo.client.AsyncClient`: the page
can do what the user's credentials allow and nothing more, and the servers gain no new
port or protocol. The modules: :mod:`~remo.ui.guard` (the token, the cookie, the Host
and CSRF checks, around every request), :mod:`~remo.ui.servers` (one client per
profile), :mod:`~remo.ui.views` (jobs and schedules as JSON for the page),
:mod:`~remo.ui.logs` (a job's output: tail, scroll back, follow), :mod:`~remo.ui.api`
(the HTTP routes) and :mod:`~remo.ui.app` (assembly and serving). The page itself is
plain HTML, CSS and hand-written JavaScript in ``static/`` and ``templates/``: nothing
to build, nothing loaded from elsewhere.
"""
