"""What the workers of a multi-worker cluster agree on before they act alike.

Under ``MultiWorkerMirroredStrategy`` every worker runs the same search and has to take
the same decisions. A decision that rests on something each worker sees alone (its
clock, the files it reads to resume) is exchanged first, so all act on one answer;
otherwise one worker would train while another stops, and the first would wait on its
all-reduce forever. Under any other strategy there is one worker and nothing is exchanged.
"""

from __future__ import annotations

import numpy as np

from kcompress._keras import tf

_EXACT = 2**24  # float32 holds every int below it exactly


class Workers:
    """The workers of ``strategy``: several under ``MultiWorkerMirroredStrategy``, else one.

    Every worker must call :meth:`gather`, :meth:`any` and :meth:`check_same` at the same
    points, as it runs the collective ops of a training.
    """

    def __init__(self, strategy=None):
        self.strategy = strategy
        self.multi = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)

    def exchange(self, values) -> np.ndarray:
        """Every replica's ``values`` (a vector), one row per replica: an all-reduce of one-hot slots.

        Runs the all-reduce under any strategy (``gather`` skips it where there is one worker).
        """
        strategy = self.strategy
        n = strategy.num_replicas_in_sync

        @tf.function
        def run(v):
            def slot(t):  # this replica's row, zeros elsewhere: their sum is the table
                ctx = tf.distribute.get_replica_context()
                return ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.one_hot(ctx.replica_id_in_sync_group, n)[:, None]
                                      * t[None, :])

            return strategy.run(slot, args=(v,))

        table = run(tf.constant(np.asarray(values, np.float32)))
        return np.asarray(strategy.experimental_local_results(table)[0])

    def gather(self, values: dict) -> list[dict]:
        """``values`` (ints of magnitude below 2**24, by name) as every replica has them, in replica order."""
        for name, v in values.items():
            if isinstance(v, bool):
                v = int(v)
            if not isinstance(v, (int, np.integer)) or abs(v) >= _EXACT:
                raise ValueError(f"{name} must be an int of magnitude below {_EXACT} to be exchanged, got {v!r}.")
        if not self.multi:
            return [{k: int(v) for k, v in values.items()}]
        table = self.exchange([int(v) for v in values.values()])
        return [dict(zip(values, (int(round(x)) for x in row), strict=True)) for row in table]

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` holds on any worker (on this one, outside a cluster)."""
        return any(w["flag"] for w in self.gather({"flag": int(bool(flag))}))

    def check_same(self, values: dict, message: str, cause: BaseException | None = None) -> None:
        """Raises ``ValueError`` on every worker when ``values`` differ between the workers.

        Args:
            values: small ints by name.
            message: the error's text; ``{differ}`` is replaced by the names that differ and
                ``{workers}`` by every replica's values.
            cause: an error this worker met, chained to the ``ValueError``.
        """
        everyone = self.gather(values)
        differ = [k for k in values if len({w[k] for w in everyone}) > 1]
        if differ:
            workers = "; ".join(f"replica {i}: {w}" for i, w in enumerate(everyone))
            raise ValueError(message.replace("{differ}", ", ".join(differ)).replace("{workers}", workers)) from cause
