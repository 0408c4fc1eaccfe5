"""remo's certificates: the CA, the registry of issued identities, credential files and
the local register socket.

Nothing here imports grpc; :mod:`remo.server.tls` turns these into gRPC credentials.
"""
