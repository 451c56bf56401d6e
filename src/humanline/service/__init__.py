"""Use cases: one class per RPC family, running domain decisions inside store transactions and
publishing their effects to waiting streams once committed."""
