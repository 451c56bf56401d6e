"""The pure dispatch domain: entities, matching, rules, validation. No I/O, no grpc, no SQL."""
