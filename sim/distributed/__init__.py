"""One mesh over several ranks (torch.distributed: gloo on CPU, nccl on GPU): partitions with
halos (:mod:`~sim.distributed.partition`), the ranks and their halo exchange
(:mod:`~sim.distributed.comm`) and partitioned training (:mod:`~sim.distributed.training`).
Partitioned rollouts of trained mesh models, writing partitioned VTK series, are
:mod:`sim.families.partitioned`."""

from sim.distributed.partition import (
                                       Part,
                                       Partition,
                                       build_partition,
                                       model_halo,
                                       partition_mesh,
                                       partition_nodes,
                                       read_partition,
                                       write_partition,
)

__all__ = ["Part", "Partition", "build_partition", "model_halo", "partition_mesh", "partition_nodes",
           "read_partition", "write_partition"]
