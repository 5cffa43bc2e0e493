"""An operation's progress log: the last events of each task of each node are kept, older ones
deleted and counted per node; a node's end forgets its tasks without a look at the others'
(a look at every node per node ending was O(nodes²) in a `switch --all`)."""

from __future__ import annotations

from hub.ops.events import ProgressLog


class Name(str):
    """A node name that counts how often it is compared."""

    compared = 0

    def __eq__(self, other: object) -> bool:
        Name.compared += 1
        return str.__eq__(self, other)

    def __hash__(self) -> int:
        return str.__hash__(self)


def test_only_the_last_events_of_each_task_are_kept_and_the_rest_counted() -> None:
    log = ProgressLog(kept=2)
    assert [log.add("n1", "t1", seq) for seq in (1, 2, 3, 4)] == [None, None, 1, 2]
    assert [log.add("n1", "t2", seq) for seq in (5, 6)] == [None, None]
    assert log.add("n2", "t1", 7) is None
    assert log.finish_node("n1") == 2
    assert log.finish_node("n2") == 0
    assert log.add("n2", "t1", 8) is None  # a new task of the same id starts afresh
    assert log.add("n2", "t1", 9) is None


def test_a_node_ending_among_thousands_looks_at_its_own_tasks_only() -> None:
    log = ProgressLog()
    names = [Name(f"n{i:05d}") for i in range(2000)]
    for seq, name in enumerate(names):
        log.add(name, f"op-{seq}", seq)
    Name.compared = 0
    for name in names[:100]:
        assert log.finish_node(name) == 0
    assert Name.compared <= 2 * 100
