"""The data lifecycle: GDPR deletions and retrievals, retention, project deletion, backup/restore.

Every piece of store work is a task row in the registry. The running server's task runner
(owned by the app's lifespan) executes them; the CLI, which cannot open a store the server holds,
creates a task and either waits for the server to run it or, when no server runs, runs it itself.
"""
