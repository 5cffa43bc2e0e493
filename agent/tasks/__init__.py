"""The agent's task kinds, one module each, over one interface (agent/tasks/base.py).

A new task kind is its message in the TaskRequest oneof (proto/gpufleet/v1/agent_link.proto),
a module here with a TaskKind subclass whose `kind` is that field's name, and one line in
agent/main.py's `task_kinds`. It gets what it needs on the host from its TaskContext
(agent/tasks/context.py), reports progress through it, and never reaches into another kind.
"""
