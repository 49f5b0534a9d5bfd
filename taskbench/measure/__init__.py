"""The instruments: probes, samples of CPU and memory, the execution ledger and what travels between hosts."""
