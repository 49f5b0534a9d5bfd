"""Beyond one process tree: network namespaces as hosts, cgroups as containers, workers joined from other machines."""
